"""Tokenising once and batching by length, so that padding wastes little compute.

Training batches follow the "megabatch" scheme: shuffle, cut into chunks of `group` batches, sort each chunk
by length, cut it into batches, shuffle the batches. Every epoch sees every row once in a random order, while
rows of similar length share a batch. Inference sorts all rows by length and restores the order afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from textcore.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Encoded:
    """Token ids of many texts, unpadded."""

    ids: list[list[int]]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        # (n,) int64 token counts, special tokens included
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))


def encode_texts(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    pairs: Sequence[str] | None = None,
) -> Encoded:
    """Tokenise texts (or text pairs) with truncation and no padding."""
    if pairs is None:
        out = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    else:
        out = tokenizer(list(texts), list(pairs), truncation=True, max_length=max_length, padding=False)
    return Encoded(ids=[list(map(int, ids)) for ids in out["input_ids"]])


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad token id lists to the longest row.

    Returns:
        `input_ids` and `attention_mask`, both (batch, longest) int64.
    """
    longest = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, group: int = 50
) -> list[np.ndarray]:
    """Random batches of row indices in which rows of similar length are grouped.

    Args:
        lengths: (n,) token counts.
        batch_size: rows per batch (the last batch of a chunk may be smaller).
        rng: the seeded generator that decides the order.
        group: how many batches form one sorted chunk; larger groups pad less but randomise less.
    """
    order = rng.permutation(len(lengths))
    chunk = batch_size * group
    batches: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    permutation = rng.permutation(len(batches))
    return [batches[i] for i in permutation]


def sorted_batches(lengths: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Batches of row indices in descending length order (for inference; callers restore the order).

    Raises:
        InvalidInput: `batch_size` is below 1 (no batch would run, and every row would stay unset).
    """
    if batch_size < 1:
        raise InvalidInput(f"expected batch_size >= 1; found {batch_size}")
    order = np.argsort(-lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def map_sorted(
    encoded: Encoded,
    pad_id: int,
    batch_size: int,
    width: int,
    forward: Callable[[dict[str, torch.Tensor]], np.ndarray],
) -> np.ndarray:
    """Run `forward` over length-sorted padded batches and gather its rows back into input order.

    Args:
        encoded: the tokenised texts.
        pad_id: the tokenizer's padding id.
        batch_size: rows per forward pass.
        width: columns of each output row.
        forward: (batch, width) float32 output of one padded CPU batch (`input_ids`, `attention_mask`).

    Returns:
        (len(encoded), width) float32, row i for text i.
    """
    out = np.zeros((len(encoded), width), dtype=np.float32)
    for idx in sorted_batches(encoded.lengths, batch_size):
        out[idx] = forward(pad_batch([encoded.ids[i] for i in idx], pad_id))
    return out


def check_batch_settings(max_length: int, batch_size: int) -> None:
    """Refuse serving settings that cannot work: fewer than 8 tokens per text, or empty batches."""
    if max_length < 8:
        raise InvalidInput(f"expected max_length >= 8; found {max_length}")
    if batch_size < 1:
        raise InvalidInput(f"expected batch_size >= 1; found {batch_size}")
