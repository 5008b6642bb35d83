"""Token classification: the model (encoder + per-token linear head) and the `Tagger` that serves it.

A tagger folder has the classifier layout (encoder, tokenizer, `head.safetensors`, `labels.json` with the BIO
tags `O`, `B-T`, `I-T`) and `metadata.json` with task `token-classification`; it is written by
`textcore.train_tagger`. Each word is tagged by the head's output on its first sub-word; raw text is split
into words by `textcore.bio.split_words`, so that every entity maps back to character offsets in the text.
Words past `max_length` sub-words are tagged `O`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from textcore.artifacts import HEAD_FILE, read_labels, trained_head, write_labels
from textcore.batching import Encoded, check_batch_settings, pad_batch, sorted_batches
from textcore.bio import OUTSIDE, TaggedSentences, check_tags, read_tagged, split_words, to_iob2
from textcore.devices import autocast, resolve_device, use_bf16
from textcore.errors import InvalidInput, some_of
from textcore.metrics import entity_spans, tagging_report
from textcore.models import fit_max_length, load_backbone

if TYPE_CHECKING:
    from peft import PeftModel

TASK = "token-classification"
IGNORE = -100  # the target of sub-words that are not a word's first (cross-entropy's ignore_index)


class TokenTagger(nn.Module):
    """A transformer encoder with a linear head on every token."""

    def __init__(self, encoder: PreTrainedModel, n_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder: PreTrainedModel | PeftModel = encoder  # a peft wrapper while an adapter trains
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(int(encoder.config.hidden_size), n_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, tokens) ids and mask -> (batch, tokens, n_labels) float32 logits."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        logits: torch.Tensor = self.head(self.dropout(hidden))
        return logits.float()

    def save(self, folder: Path, tokenizer: PreTrainedTokenizerBase, labels: list[str]) -> None:
        """Write encoder (only its adapter if it has one), tokenizer, head and tag set into `folder`."""
        from textcore.adapters import save_encoder  # noqa: PLC0415 - peft is only needed when saving

        save_encoder(self.encoder, folder)
        tokenizer.save_pretrained(str(folder))
        state = {k: v.detach().float().cpu().contiguous() for k, v in self.head.state_dict().items()}
        save_file(state, str(folder / HEAD_FILE))
        write_labels(folder, labels, multi_label=False)


@dataclass(frozen=True, slots=True)
class EncodedWords:
    """Sub-word ids of pre-split sentences, with the word each sub-word belongs to."""

    encoded: Encoded
    word_ids: list[list[int | None]]  # per sentence and sub-word: its word's index, None for [CLS]/[SEP]
    n_words: list[int]

    def __len__(self) -> int:
        return len(self.encoded)

    def targets(self, label_ids: Sequence[Sequence[int]]) -> list[list[int]]:
        """Per sub-word targets: the word's label id on its first sub-word, `IGNORE` elsewhere."""
        out = []
        for words, labels in zip(self.word_ids, label_ids, strict=True):
            row, previous = [], None
            for word in words:
                row.append(labels[word] if word is not None and word != previous else IGNORE)
                previous = word
            out.append(row)
        return out


def encode_words(
    tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Sequence[str]], max_length: int
) -> EncodedWords:
    """Tokenise sentences given as word lists (`is_split_into_words`), truncated to `max_length` sub-words.

    Raises:
        InvalidInput: the tokenizer is not a fast (Rust) tokenizer, which alone maps sub-words to words.
    """
    if not tokenizer.is_fast:
        raise InvalidInput(f"expected a fast tokenizer (it maps sub-words to words); found {type(tokenizer)}")
    if not sentences:
        return EncodedWords(Encoded([]), [], [])
    out = tokenizer(
        [list(words) for words in sentences],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
        padding=False,
    )
    return EncodedWords(
        encoded=Encoded([list(map(int, ids)) for ids in out["input_ids"]]),
        word_ids=[out.word_ids(i) for i in range(len(sentences))],
        n_words=[len(words) for words in sentences],
    )


@torch.inference_mode()
def word_probabilities(
    model: TokenTagger,
    words: EncodedWords,
    *,
    device: torch.device,
    bf16: bool,
    pad_id: int,
    outside: int,
    batch_size: int = 64,
) -> list[np.ndarray]:
    """Per sentence, (n_words, n_labels) float32 tag probabilities read at each word's first sub-word.

    A word without a sub-word (cut off by truncation) gets probability 1 for the `outside` label.
    """
    out: list[np.ndarray] = [np.zeros((0, 0), dtype=np.float32)] * len(words)
    for idx in sorted_batches(words.encoded.lengths, batch_size):
        batch = pad_batch([words.encoded.ids[i] for i in idx], pad_id)
        with autocast(device, bf16):
            logits = model(**{k: v.to(device) for k, v in batch.items()})
        probabilities = torch.softmax(logits.float(), dim=-1).cpu().numpy()  # (batch, tokens, n_labels)
        for row, i in enumerate(idx):
            per_word = np.zeros((words.n_words[i], probabilities.shape[-1]), dtype=np.float32)
            per_word[:, outside] = 1.0
            seen: set[int] = set()
            for position, word in enumerate(words.word_ids[i]):
                if word is not None and word not in seen:
                    seen.add(word)
                    per_word[word] = probabilities[row, position]
            out[i] = per_word
    return out


@dataclass(frozen=True, slots=True)
class Entity:
    """An entity found in a text: its characters `text[start:end]`, type and mean tag probability."""

    text: str
    label: str
    start: int
    end: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "label": self.label,
            "start": self.start,
            "end": self.end,
            "score": self.score,
        }


class Tagger:
    """Tags words with BIO tags and finds entities in raw text; batched, length-sorted, bf16 where fast.

    Safe to call from several threads at once: tokenisation is serialised (the fast tokenizer is not
    re-entrant), the forward passes run concurrently under `torch.inference_mode`. A `max_length` above the
    model's position limit is lowered to it (`textcore.models.fit_max_length`).
    """

    def __init__(
        self,
        model: TokenTagger,
        tokenizer: PreTrainedTokenizerBase,
        labels: list[str],
        *,
        device: str = "auto",
        precision: str = "auto",
        max_length: int = 256,
        batch_size: int = 64,
    ) -> None:
        check_batch_settings(max_length, batch_size)
        check_tags(labels, "labels")
        if OUTSIDE not in labels or model.head.out_features != len(labels):
            raise InvalidInput(
                f"expected a head with one output per tag, O among them; found {model.head.out_features} "
                f"outputs for {labels}"
            )
        self.device = resolve_device(device)
        self.bf16 = use_bf16(precision, self.device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.labels = labels
        self.max_length = fit_max_length(max_length, model.encoder.config, tokenizer)
        self.batch_size = batch_size
        self._pad_id = int(tokenizer.pad_token_id or 0)
        self._tokenizer_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike[str],
        *,
        device: str = "auto",
        precision: str = "auto",
        max_length: int = 256,
        batch_size: int = 64,
    ) -> Tagger:
        """Load a tagger folder written by `train_tagger`.

        Raises:
            InvalidInput: the folder is not a tagger (its metadata names another task, or none).
        """
        head_path = trained_head(folder, TASK, "tagger")
        labels, _ = read_labels(Path(folder))
        backbone = load_backbone(folder)
        model = TokenTagger(backbone.model, len(labels))
        model.head.load_state_dict(load_file(str(head_path)))
        return cls(
            model,
            backbone.tokenizer,
            labels,
            device=device,
            precision=precision,
            max_length=max_length,
            batch_size=batch_size,
        )

    @property
    def entity_types(self) -> list[str]:
        """The entity types the model tags, sorted."""
        return sorted({label[2:] for label in self.labels if label != OUTSIDE})

    def word_probabilities(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Per sentence, (n_words, n_labels) float32 probabilities of each tag in `labels` for each word."""
        if isinstance(sentences, str) or any(isinstance(s, str) for s in sentences):
            raise InvalidInput("expected a list of sentences, each a list of words; found a string")
        with self._tokenizer_lock:
            words = encode_words(self.tokenizer, sentences, self.max_length)
        return word_probabilities(
            self.model,
            words,
            device=self.device,
            bf16=self.bf16,
            pad_id=self._pad_id,
            outside=self.labels.index(OUTSIDE),
            batch_size=self.batch_size,
        )

    def tag_tokens(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """The IOB2 tags of pre-split sentences, one list of tags per sentence and one tag per word."""
        return [self._tags(p) for p in self.word_probabilities(sentences)]

    def tag(self, texts: Sequence[str]) -> list[list[Entity]]:
        """The entities of each raw text, with character offsets into it, in order of appearance."""
        if isinstance(texts, str):
            raise InvalidInput("expected a list of texts; found a single string")
        split = [split_words(text) for text in texts]
        probabilities = self.word_probabilities([[w for w, _, _ in words] for words in split])
        results = []
        for text, words, p in zip(texts, split, probabilities, strict=True):
            best = p.max(axis=1) if len(p) else p
            entities = []
            for kind, first, end in entity_spans(self._tags(p)):
                start, stop = words[first][1], words[end - 1][2]
                score = float(best[first:end].mean())
                entities.append(Entity(text[start:stop], kind, start, stop, score))
            results.append(entities)
        return results

    def _tags(self, probabilities: np.ndarray) -> list[str]:
        return to_iob2([self.labels[i] for i in probabilities.argmax(axis=1)]) if len(probabilities) else []


def evaluate_tagger(tagger: Tagger, data: TaggedSentences) -> dict[str, Any]:
    """Entity-level precision, recall and F1 (exact span and type), token accuracy and per-type figures.

    Raises:
        InvalidInput: the data holds entity types the model was not trained on.
    """
    unknown = sorted(set(data.entity_counts()) - set(tagger.entity_types))
    if unknown:
        raise InvalidInput(
            f"entity types {some_of(unknown)} are not known to the model; "
            f"it knows {some_of(tagger.entity_types)}"
        )
    return tagging_report(data.tags, tagger.tag_tokens(data.tokens)).to_dict()


def evaluate_tagger_file(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    tokens_column: str,
    tags_column: str,
    *,
    device: str = "auto",
    precision: str = "auto",
) -> dict[str, Any]:
    """`evaluate_tagger` on a model folder and a CoNLL or CSV/JSONL file (see `textcore.bio.read_tagged`)."""
    sentences = read_tagged(data, tokens_column, tags_column)
    return evaluate_tagger(Tagger.load(model, device=device, precision=precision), sentences)
