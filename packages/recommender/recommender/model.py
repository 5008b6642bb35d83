"""The text-interest model: a (fine-tuned) encoder, user profiles, and a blend with behaviour signals.

Two towers share one encoder: items are embedded from their catalog text, a user from their history, either
as a recency-weighted mean of the history's item vectors (`profile="mean"`) or by encoding the history's
titles as one text (`profile="text"`, the anchor format the encoder was fine-tuned on), or from free-text
interests (cold start). Content similarity is then blended with item co-occurrence (item-kNN) and popularity;
each component is z-normalised per user so that the blend weights, fitted on validation data, are comparable.

On disk a model is an encoder folder (`textcore.Encoder.from_pretrained` loads it) plus `recommender.json`
holding the profile configuration, the blend weights and metadata (what it saw, validation figures).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recommender.baselines import ItemKNN, Popularity
from recommender.data import Catalog
from recommender.model_folders import MODEL_FILE, require_model_file
from recommender.protocol import Scorer
from textcore import DEFAULT_MODEL, Encoder, InvalidInput
from textcore.artifacts import read_json, write_json_atomic

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

FORMAT_VERSION = 1
PROFILES = ("mean", "text")
HISTORY_SEPARATOR = " | "


@dataclass(frozen=True)
class BlendWeights:
    """Weights of the z-normalised components; only their ratios matter."""

    content: float = 0.4
    knn: float = 0.5
    popularity: float = 0.1

    def __post_init__(self) -> None:
        values = dataclasses.astuple(self)
        if min(values) < 0 or sum(values) <= 0 or not all(np.isfinite(values)):
            raise InvalidInput(f"expected finite blend weights >= 0 with a positive sum; found {self}")


@dataclass(frozen=True)
class ModelConfig:
    """How a user profile is built and how the encoder reads text."""

    recency_decay: float = 0.8  # weight of the k-th newest history item is decay**k (the newest has 1)
    history_items: int = 20  # items in a mean profile
    profile: str = "mean"  # mean | text
    text_history_items: int = 5  # titles in a text profile (the training anchors' length)
    max_length: int = 128  # encoder tokens per text
    knn_decay: float = 1.0  # co-occurrence: the k-th newest history item counts decay**k (1: all alike)
    # Content also looks at the single closest history item: content = (1 - s) * profile similarity
    # + s * the best recency-weighted similarity to one history item (a mean blurs users of many interests).
    max_share: float = 0.0
    # Co-occurrence similarity c_hi / (n_h ** alpha * n_i ** (1 - alpha) + shrink); 0.5 and 10: item-kNN's
    knn_alpha: float = 0.5
    knn_shrink: float = 10.0

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise InvalidInput(f"profile: expected one of {', '.join(PROFILES)}; found {self.profile!r}")
        for name in ("recency_decay", "knn_decay"):
            if not 0 < getattr(self, name) <= 1:
                raise InvalidInput(f"{name}: expected a number in (0, 1]; found {getattr(self, name)!r}")
        for name in ("max_share", "knn_alpha"):
            if not 0 <= getattr(self, name) <= 1:
                raise InvalidInput(f"{name}: expected a number in [0, 1]; found {getattr(self, name)!r}")
        if not self.knn_shrink >= 0:
            raise InvalidInput(f"knn_shrink: expected a number >= 0; found {self.knn_shrink!r}")
        if self.history_items < 1 or self.text_history_items < 1:
            raise InvalidInput(
                f"expected history_items and text_history_items >= 1; "
                f"found {self.history_items}, {self.text_history_items}"
            )
        if not 8 <= self.max_length <= 8192:
            raise InvalidInput(f"max_length: expected an integer in [8, 8192]; found {self.max_length!r}")


def history_text(titles: Sequence[str], limit: int) -> str:
    """The text of a history: its last `limit` titles (given oldest first), newest first, " | "-joined.

    Newest first so that truncation to the encoder's length drops the oldest items. Training anchors and
    text profiles both use this, so serving reads histories exactly as the encoder was trained to.
    """
    return HISTORY_SEPARATOR.join(reversed([t.strip() for t in titles[-limit:]]))


_PHRASE_END = re.compile(r"[,;\n]")  # what ends a phrase of interests (with the word "and")


def reading_windows(tokenizer: PreTrainedTokenizerBase, text: str, max_length: int) -> list[tuple[str, int]]:
    """`text` in pieces the encoder reads whole, in order, each with its number of tokens.

    The encoder reads `max_length` tokens of a text and drops the rest, so free-text interests longer than
    that (128 tokens, about 500 characters) would be scored on their start alone. A text that fits is one
    piece, as given; a longer one is cut into pieces of at most `max_length` tokens (special tokens
    included), each cut at the last phrase boundary before the limit (a comma, semicolon, line break or
    the word "and"), else at the last space, else where the limit falls.
    """
    room = max_length - tokenizer.num_special_tokens_to_add()
    if not tokenizer.is_fast:  # no character offsets to cut at: the encoder reads what fits
        return [(text, room)]
    tokens = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets: list[tuple[int, int]] = tokens["offset_mapping"]
    if len(offsets) <= room:
        return [(text, len(offsets))]

    def phrase_starts(j: int) -> bool:  # token j begins a phrase
        between = text[offsets[j - 1][0] : offsets[j][0]]
        return bool(_PHRASE_END.search(between)) or text[offsets[j][0] : offsets[j][1]].lower() == "and"

    def word_starts(j: int) -> bool:
        return offsets[j - 1][1] < offsets[j][0]

    windows = []
    start = 0
    while start < len(offsets):
        end = min(start + room, len(offsets))
        if end < len(offsets):
            span = range(end, start, -1)
            end = next((j for j in span if phrase_starts(j)), None) or next(
                (j for j in span if word_starts(j)), end
            )
        windows.append((text[offsets[start][0] : offsets[end - 1][1]], end - start))
        start = end
    return windows


def zscore(scores: np.ndarray) -> np.ndarray:
    """Per-row (last axis) standardisation; a constant row becomes zeros. Returns float32."""
    x = np.asarray(scores, dtype=np.float32)
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    # constant rows (no history, no co-occurrence) carry no preference: zeros, not NaN
    return np.where(std > 1e-8, (x - mean) / np.maximum(std, 1e-8), 0.0).astype(np.float32)


class TextInterestModel:
    """Encoder (fine-tuned by the core's embedding task) + item vectors + co-occurrence + popularity + blend.

    Args:
        encoder: The text encoder shared by items, histories and interests.
        config: Profile settings.
        weights: Blend weights of content, item-kNN and popularity.
        meta: Free-form metadata; `meta["trained_on"]` records what the model saw (see `training`).
    """

    def __init__(
        self, encoder: Encoder, config: ModelConfig, weights: BlendWeights, meta: dict[str, Any]
    ) -> None:
        self.encoder = encoder
        self.config = config
        self.weights = weights
        self.meta = meta

    @classmethod
    def from_base(
        cls, name: str | Path = DEFAULT_MODEL, *, device: str = "auto", precision: str = "auto"
    ) -> TextInterestModel:
        """An untrained (zero-shot) model on a pretrained encoder, with default profile and blend weights."""
        config = ModelConfig()
        encoder = Encoder.from_pretrained(
            name, device=device, precision=precision, max_length=config.max_length
        )
        return cls(encoder, config, BlendWeights(), {"base_model": str(name), "trained_on": None})

    @classmethod
    def load(cls, folder: Path, *, device: str = "auto", precision: str = "auto") -> TextInterestModel:
        """Load a model folder written by `training.train_model` (or `save`).

        Raises:
            NotFound: The folder has no `recommender.json` (it is not a recommender model).
            InvalidInput: The file is malformed.
        """
        path = require_model_file(folder)
        data = read_json(path)
        try:
            config = ModelConfig(**data["config"])
            weights = BlendWeights(**data["weights"])
            meta = dict(data["meta"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"{path}: expected 'config', 'weights' and 'meta' objects; {exc}") from exc
        encoder = Encoder.from_pretrained(
            folder, device=device, precision=precision, max_length=config.max_length
        )
        return cls(encoder, config, weights, meta)

    def save(self, folder: Path) -> None:
        """Write `recommender.json` beside the encoder files (the encoder too when the folder has none)."""
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "config.json").is_file():
            self.encoder.backbone.model.save_pretrained(str(folder), safe_serialization=True)
            self.encoder.tokenizer.save_pretrained(str(folder))
        payload = {
            "format_version": FORMAT_VERSION,
            "config": dataclasses.asdict(self.config),
            "weights": dataclasses.asdict(self.weights),
            "meta": self.meta,
        }
        write_json_atomic(folder / MODEL_FILE, payload)

    @property
    def dim(self) -> int:
        """Embedding width."""
        return self.encoder.dim

    def item_vectors(self, texts: Sequence[str], *, chunk: int = 2048, progress: bool = False) -> np.ndarray:
        """Embed item texts. Returns (n, dim) float32, L2-normalised, in input order."""
        if isinstance(texts, str):
            raise InvalidInput("expected a list of item texts; found a single string")
        parts = [np.zeros((0, self.dim), dtype=np.float32)]
        starts = range(0, len(texts), chunk)
        if progress:
            from tqdm.auto import tqdm  # noqa: PLC0415 - only for the CLI's progress bar

            starts = tqdm(starts, desc="embed items", unit="chunk")
        for start in starts:
            parts.append(self.encoder.encode(list(texts[start : start + chunk])))
        return np.concatenate(parts)

    def profile(self, history_vectors: np.ndarray, history_texts: Sequence[str]) -> np.ndarray:
        """A user's interest vector from their history (oldest first).

        Args:
            history_vectors: (k, dim) item vectors of the history, used by the mean profile.
            history_texts: The k item titles, used by the text profile.

        Returns:
            (dim,) float32, L2-normalised; zeros for an empty history.
        """
        if self.config.profile == "text":
            text_profile: np.ndarray = self._text_profiles([list(history_texts)])[0]
            return text_profile
        vectors = np.asarray(history_vectors, dtype=np.float32)
        if vectors.size == 0:
            return np.zeros(self.dim, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InvalidInput(f"expected history vectors of shape (k, {self.dim}); found {vectors.shape}")
        mean: np.ndarray = mean_profiles(
            [range(len(vectors))], vectors, self.config.recency_decay, self.config.history_items
        )[0]
        return mean

    def profiles(
        self, histories: Sequence[Sequence[int]], vectors: np.ndarray, titles: Sequence[str]
    ) -> np.ndarray:
        """Profiles of many users at once (one encoder call for text profiles).

        Args:
            histories: Catalog positions per user, oldest first.
            vectors: (n_items, dim) catalog item vectors.
            titles: Catalog titles.

        Returns:
            (n_users, dim) float32; zero rows for empty histories.
        """
        if self.config.profile == "text":
            return self._text_profiles([[titles[i] for i in history] for history in histories])
        return mean_profiles(histories, vectors, self.config.recency_decay, self.config.history_items)

    def content(
        self, histories: Sequence[Sequence[int]], vectors: np.ndarray, titles: Sequence[str]
    ) -> np.ndarray:
        """Content scores of every catalog item for each history: (n_users, n_items) float32 cosines."""
        scores: np.ndarray = self.profiles(histories, vectors, titles) @ vectors.T
        share = self.config.max_share
        if share > 0:
            closest = max_similarities(
                histories, vectors, vectors, self.config.recency_decay, self.config.history_items
            )
            scores = (1 - share) * scores + share * closest
        return scores

    def candidate_content(
        self, history_vectors: np.ndarray, history_texts: Sequence[str], candidates: np.ndarray
    ) -> np.ndarray:
        """Content scores of (m, dim) candidate vectors for one history (oldest first): (m,) float32."""
        scores: np.ndarray = candidates @ self.profile(history_vectors, history_texts)
        share = self.config.max_share
        if share > 0 and len(history_vectors):
            closest = max_similarities(
                [range(len(history_vectors))],
                np.asarray(history_vectors, dtype=np.float32),
                candidates,
                self.config.recency_decay,
                self.config.history_items,
            )[0]
            scores = (1 - share) * scores + share * closest
        return scores

    def _text_profiles(self, histories: list[list[str]]) -> np.ndarray:
        out = np.zeros((len(histories), self.dim), dtype=np.float32)
        rows = [i for i, titles in enumerate(histories) if titles]
        texts = [history_text(histories[i], self.config.text_history_items) for i in rows]
        if rows:
            out[rows] = self.encoder.encode(texts)
        return out

    def interest_vector(self, interests: str) -> np.ndarray:
        """Cold start: free-text interests -> (dim,) float32, L2-normalised.

        Every part of the text counts: one longer than the encoder reads at once is read in pieces
        (`reading_windows`), and their vectors are averaged, each weighing its number of tokens, as the
        encoder's mean pooling weighs the tokens of one text.

        Raises:
            InvalidInput: The text is empty.
        """
        if not interests.strip():
            raise InvalidInput("expected interests as non-empty free text; found an empty string")
        windows = reading_windows(self.encoder.tokenizer, interests.strip(), self.encoder.max_length)
        if len(windows) == 1:
            vector: np.ndarray = self.encoder.encode([windows[0][0]])[0]
            return vector
        vectors = self.encoder.encode([text for text, _ in windows])  # (w, dim)
        weights = np.array([tokens for _, tokens in windows], dtype=np.float32)
        mean: np.ndarray = weights @ vectors
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)

    def blend(self, content: np.ndarray, knn: np.ndarray | None, popularity: np.ndarray | None) -> np.ndarray:
        """Weighted sum of the per-row z-normalised components (missing ones count as zero).

        Args:
            content: (n_items,) or (n_users, n_items) content similarities.
            knn: Co-occurrence scores of the same shape, or None.
            popularity: Popularity scores of the same shape, or None.

        Returns:
            float32 scores of content's shape.
        """
        total = self.weights.content * zscore(content)
        for weight, part in ((self.weights.knn, knn), (self.weights.popularity, popularity)):
            if part is None or weight == 0:
                continue
            if np.shape(part) != np.shape(content):
                raise InvalidInput(f"expected component shape {np.shape(content)}; found {np.shape(part)}")
            total += weight * zscore(part)
        return total.astype(np.float32, copy=False)

    def scorer(
        self, catalog: Catalog, train: dict[str, list[str]], *, item_vectors: np.ndarray | None = None
    ) -> Scorer:
        """A scorer over the whole catalog for `protocol.evaluate`; kNN and popularity come from `train` only.

        Args:
            catalog: The items to score.
            train: User -> item ids the model may see (co-occurrence and popularity are counted from them).
            item_vectors: Precomputed (n_items, dim) vectors of `catalog.texts`; embedded here when None.
        """
        vectors = self.item_vectors(catalog.texts) if item_vectors is None else item_vectors
        config = self.config
        knn = (
            ItemKNN(train, catalog, shrink=config.knn_shrink, alpha=config.knn_alpha)
            if self.weights.knn > 0
            else None
        )
        popularity = Popularity(train, catalog) if self.weights.popularity > 0 else None

        def score(histories: list[list[int]]) -> np.ndarray:
            content = self.content(histories, vectors, catalog.titles)
            return self.blend(
                content,
                knn(histories, self.config.knn_decay) if knn is not None else None,
                popularity(histories) if popularity is not None else None,
            )

        return score


def mean_profiles(
    histories: Sequence[Sequence[int]], vectors: np.ndarray, decay: float, limit: int
) -> np.ndarray:
    """Recency-weighted mean of each history's last `limit` item vectors, L2-normalised.

    Returns:
        (n_users, dim) float32; zero rows for empty histories.
    """
    out = np.zeros((len(histories), vectors.shape[1]), dtype=np.float32)
    for row, history in enumerate(histories):
        recent = list(history[-limit:])
        if not recent:
            continue
        # oldest first, so the newest item (last) gets decay**0 = 1
        weights = decay ** np.arange(len(recent) - 1, -1, -1, dtype=np.float32)
        summed = weights @ vectors[recent]
        norm = float(np.linalg.norm(summed))
        if norm > 0:
            out[row] = summed / norm
    return out


def max_similarities(
    histories: Sequence[Sequence[int]], vectors: np.ndarray, targets: np.ndarray, decay: float, limit: int
) -> np.ndarray:
    """Each target's best recency-weighted cosine to one of a history's last `limit` items.

    Args:
        histories: Positions into `vectors` per user, oldest first.
        vectors: (n, dim) history-side item vectors, L2-normalised.
        targets: (m, dim) vectors to score, L2-normalised.
        decay: The k-th newest history item's similarities are multiplied by ``decay**k``.
        limit: History items considered.

    Returns:
        (n_users, m) float32; zero rows for empty histories.
    """
    out = np.zeros((len(histories), len(targets)), dtype=np.float32)
    for row, history in enumerate(histories):
        recent = list(history[-limit:])
        if recent:
            weights = decay ** np.arange(len(recent) - 1, -1, -1, dtype=np.float32)
            out[row] = (weights[:, None] * (vectors[recent] @ targets.T)).max(axis=0)
    return out
