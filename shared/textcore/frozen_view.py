"""A second view for a classifier: a linear model on the frozen base encoder's embeddings, blended in.

Fine-tuning moves the encoder away from its pretrained sentence embeddings; a logistic regression on those
untouched embeddings makes different mistakes. With `TrainConfig.blend_frozen`, training fits that
regression on the training rows and chooses a blend weight `w` on the validation rows; the classifier then
predicts

    p = (1 - w) * softmax(fine-tuned logits) + w * softmax(frozen-view logits)

On a BANKING77 holdout (77 intents, 1,003 rows no run saw) the blend chose w = 0.45, 0.5 and 0.05 on three
training seeds and added 0.5, 1.4 and 0.1 points of accuracy (median 0.929 to 0.934;
`bench/results/recipes-banking77-frozen-view.md`); on PhraseBank, where the frozen view is much the weaker,
it chose w = 0 on two seeds (nothing is saved). The view shares the classifier's tokenizer (training feeds
the same validation batches to both encoders); it costs a second encoder pass per prediction and the base
encoder's weights in the model folder. A service that already embeds its texts with that same base encoder
(the chatbot's dense retrieval) can hand those embeddings to the view instead
(`Classifier.share_frozen_encoder`), and the second pass is gone: the chat service then took 22.6 requests/s
with the view against 24.4 without it, and 16.9 when the view ran its own encoder (bench/README.md).

On disk, in the classifier folder (see `textcore.artifacts`):

    frozen/config.json, model.safetensors, tokenizer files   the base encoder, untouched
    frozen/view.safetensors                                  `weight` (n_labels, dim), `bias` (n_labels,)
    frozen/view.json                                         {"blend_weight": w, "labels": [...]}

The regression's standardisation is folded into `weight` and `bias`, which act on the L2-normalised
mean-pooled embeddings `textcore.embeddings.Encoder` computes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerBase

from textcore.embeddings import Encoder
from textcore.errors import InvalidInput, NotFound
from textcore.models import resolve_model

FROZEN_DIR = "frozen"
VIEW_WEIGHTS = "view.safetensors"
VIEW_CONFIG = "view.json"
# candidate blend weights (see choose_blend_weight)
BLEND_GRID = tuple(round(0.05 * i, 2) for i in range(13))  # 0.0 .. 0.6
REGRESSION_C = 1.0  # inverse L2 strength of the regression, as in the frozen-embedding baseline

# texts -> (n, dim) float32 L2-normalised embeddings, as `Encoder.encode` computes them
Embed = Callable[[Sequence[str]], np.ndarray]


def has_frozen_view(folder: Path) -> bool:
    """Whether a classifier folder carries a frozen view."""
    return (folder / FROZEN_DIR / VIEW_CONFIG).is_file()


def frozen_base(base_model: str) -> str:
    """The encoder a run's frozen view embeds with: the base's own frozen view when the base is a classifier
    with one (a retrain from an earlier version keeps the pretrained view), else the base itself."""
    try:
        folder = resolve_model(base_model)
    except NotFound:  # an unknown name fails later, where the base itself is loaded
        return base_model
    return str(folder / FROZEN_DIR) if has_frozen_view(folder) else base_model


@dataclass
class FrozenView:
    """The frozen encoder, the linear model on its embeddings, and the blend weight."""

    encoder: Encoder
    weight: torch.Tensor  # (n_labels, dim) float32
    bias: torch.Tensor  # (n_labels,) float32
    blend_weight: float
    labels: list[str]

    def probabilities(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(batch, n_labels) float32 probabilities of one padded batch (on the CPU)."""
        with torch.inference_mode():
            embedded = self.encoder.embed_batch(batch)
        return self.probabilities_of(embedded)

    def probabilities_of(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(n, n_labels) float32 probabilities of (n, dim) embeddings from the view's encoder (on the CPU)."""
        return torch.softmax(embeddings.float().cpu() @ self.weight.T + self.bias, dim=-1)

    def blend(self, fine_tuned_logits: torch.Tensor, frozen: torch.Tensor) -> torch.Tensor:
        """Blended probabilities: the fine-tuned model's logits of some rows, the view's probabilities of the
        same rows."""
        fine_tuned = torch.softmax(fine_tuned_logits.float().cpu(), dim=-1)
        w = self.blend_weight
        return (1.0 - w) * fine_tuned + w * frozen

    def save(self, folder: Path) -> None:
        """Write `folder/frozen/`: the encoder, the linear model and the blend weight."""
        target = folder / FROZEN_DIR
        target.mkdir(parents=True, exist_ok=True)
        self.encoder.backbone.model.save_pretrained(str(target), safe_serialization=True)
        self.encoder.tokenizer.save_pretrained(str(target))
        save_file(
            {"weight": self.weight.contiguous(), "bias": self.bias.contiguous()}, str(target / VIEW_WEIGHTS)
        )
        config = {"blend_weight": self.blend_weight, "labels": self.labels}
        (target / VIEW_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(
        cls,
        folder: Path,
        labels: list[str],
        *,
        device: str = "auto",
        precision: str = "auto",
        max_length: int = 256,
        batch_size: int = 64,
    ) -> FrozenView:
        """Load the view of a classifier folder whose labels are `labels`; its encoder cuts texts at
        `max_length` tokens (the classifier's)."""
        target = folder / FROZEN_DIR
        try:
            config = json.loads((target / VIEW_CONFIG).read_text(encoding="utf-8"))
            tensors = load_file(str(target / VIEW_WEIGHTS))
            weight, bias, blend_weight = tensors["weight"], tensors["bias"], float(config["blend_weight"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"{target}: expected a frozen view written by textcore ({exc})") from None
        if config.get("labels") != labels or tuple(weight.shape[:1]) != (len(labels),):
            raise InvalidInput(f"{target}: expected the frozen view to have the classifier's labels {labels}")
        encoder = Encoder.from_pretrained(
            target, device=device, precision=precision, max_length=max_length, batch_size=batch_size
        )
        return cls(encoder, weight, bias, blend_weight, labels)


def same_encoder(a: Encoder, b: Encoder) -> bool:
    """Whether two encoders embed a text alike: equal weights, vocabulary, device and precision."""
    if (a.device, a.bf16) != (b.device, b.bf16) or a.tokenizer.get_vocab() != b.tokenizer.get_vocab():
        return False
    ours, theirs = a.model.state_dict(), b.model.state_dict()
    return ours.keys() == theirs.keys() and all(
        ours[k].shape == theirs[k].shape and torch.equal(ours[k], theirs[k]) for k in ours
    )


def replace_frozen_view(folder: Path, view: FrozenView | None) -> None:
    """Write `view` into a classifier folder, or none: a view left by an earlier run there is removed."""
    shutil.rmtree(folder / FROZEN_DIR, ignore_errors=True)
    if view is not None:
        view.save(folder)


def check_same_tokenizer(view: PreTrainedTokenizerBase, classifier: PreTrainedTokenizerBase) -> None:
    """The view reads the classifier's batches, so both must map text to the same ids."""
    if view.get_vocab() != classifier.get_vocab():
        raise InvalidInput(
            "blend_frozen: expected the frozen base encoder to share the classifier's tokenizer; their "
            "vocabularies differ"
        )


def fit_frozen_view(
    base_model: str,
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    labels: list[str],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int,
    weights: Sequence[float] | None = None,
    device: str = "auto",
    precision: str = "auto",
) -> FrozenView:
    """Fit the linear model on the frozen encoder's embeddings of the training rows (cut at `max_length`
    tokens, as training cut them).

    `tokenizer`: the classifier's, which the view must share. `weights`: per-row sample weights, as training
    used them (a row of weight 0 is left out). The blend weight starts at 0; `choose_blend_weight` sets it.
    """
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415 - only training needs sklearn
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    encoder = Encoder.from_pretrained(
        frozen_base(base_model), device=device, precision=precision, max_length=max_length
    )
    check_same_tokenizer(encoder.tokenizer, tokenizer)
    features = encoder.encode(train_texts)
    index = {label: i for i, label in enumerate(labels)}
    targets = np.array([index[label] for label in train_labels])
    sample_weight = None if weights is None else np.asarray(weights, dtype=np.float64)
    scaler = StandardScaler().fit(features, sample_weight=sample_weight)
    regression = LogisticRegression(C=REGRESSION_C, max_iter=2000)
    regression.fit(scaler.transform(features), targets, sample_weight=sample_weight)
    weight = np.zeros((len(labels), features.shape[1]), dtype=np.float64)
    bias = np.full(len(labels), -1e4, dtype=np.float64)  # a label with no training row: never predicted
    rows = regression.classes_.astype(int)
    if len(rows) == 2:  # a binary regression keeps one row of weights: the second class's log-odds
        coef = np.vstack([-regression.coef_[0] / 2, regression.coef_[0] / 2])
        intercept = np.array([-regression.intercept_[0] / 2, regression.intercept_[0] / 2])
    else:
        coef, intercept = regression.coef_, regression.intercept_
    # standardisation folded in: w . (x - mean) / scale + b = (w / scale) . x + (b - w . mean / scale)
    weight[rows] = coef / scaler.scale_
    bias[rows] = intercept - (coef / scaler.scale_) @ scaler.mean_
    return FrozenView(
        encoder,
        torch.from_numpy(weight.astype(np.float32)),
        torch.from_numpy(bias.astype(np.float32)),
        0.0,
        labels,
    )


def choose_blend_weight(
    fine_tuned: np.ndarray, frozen: np.ndarray, truth: np.ndarray
) -> tuple[float, dict[str, float]]:
    """The blend weight for the validation rows, and every candidate's accuracy keyed by weight.

    The weight is the smallest whose accuracy is within one row of the best: a one-row gain is noise (on a
    PhraseBank split a weight of 0.35 won one validation row and lost 1.8 points on held-out rows).

    Args:
        fine_tuned: (n, n_labels) the fine-tuned model's validation probabilities.
        frozen: (n, n_labels) the frozen view's.
        truth: (n,) the validation rows' label indices.
    """
    right = {
        w: int((((1.0 - w) * fine_tuned + w * frozen).argmax(axis=1) == truth).sum()) for w in BLEND_GRID
    }
    best = max(right.values())
    weight = min(w for w in BLEND_GRID if right[w] >= best - 1)
    return weight, {f"{w:.2f}": right[w] / len(truth) for w in BLEND_GRID}
