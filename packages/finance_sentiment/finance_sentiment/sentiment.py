"""Finance sentiment of texts: label, probabilities and a score in [-1, 1], from a `textcore` classifier.

The model is the registry's active version of a name (swapped without a restart when another version is
promoted) or one fixed model folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from textcore import (
    ActiveModelWatcher,
    EncoderSettings,
    InvalidInput,
    LabelPredictor,
    ModelRegistry,
    ModelVersion,
    load_predictor,
)


@dataclass(frozen=True, slots=True)
class Sentiment:
    """One text's sentiment."""

    label: str
    scores: dict[str, float]  # label -> probability
    sentiment: float  # P(positive) - P(negative), in [-1, 1]


class SentimentModel:
    """A loaded classifier whose labels include ``negative`` and ``positive``.

    Raises:
        InvalidInput: If the classifier does not know both polar labels, or is multi-label.
    """

    def __init__(self, predictor: LabelPredictor, version: str) -> None:
        missing = {"negative", "positive"} - set(predictor.labels)
        if missing or predictor.multi_label:
            raise InvalidInput(
                f"expected a single-label model with labels including negative and positive ({version}); "
                f"found labels {predictor.labels}{' (multi-label)' if predictor.multi_label else ''}"
            )
        self.predictor = predictor
        self.version = version
        self._positive = predictor.labels.index("positive")
        self._negative = predictor.labels.index("negative")

    def classify(self, texts: Sequence[str]) -> list[Sentiment]:
        """Classify a batch of texts (blocking: call it from a worker thread in async code)."""
        probabilities = self.predictor.predict_proba(texts)  # (n, n_labels)
        labels = self.predictor.labels
        return [
            Sentiment(
                label=labels[int(row.argmax())],
                scores={label: round(float(p), 6) for label, p in zip(labels, row, strict=True)},
                sentiment=round(float(row[self._positive] - row[self._negative]), 6),
            )
            for row in probabilities
        ]


def _load(folder: Path, version: str, encoder: EncoderSettings, backend: str) -> SentimentModel:
    predictor = load_predictor(
        folder,
        backend=backend,
        device=encoder.device,
        precision=encoder.precision,
        batch_size=encoder.batch_size,
    )  # texts are cut where the model's training cut them
    return SentimentModel(predictor, version)


class SentimentSource:
    """Gives the sentiment model to use now: the registry's active version, or a fixed folder.

    Args:
        encoder: Device, precision and batching of the classifier.
        registry: The model registry folder; its ``model_name`` active version is served and followed.
        model_name: The registry name.
        model_path: A model folder to serve instead of the registry (never reloaded).
        backend: ``torch`` (any device) or ``onnx`` (ONNX Runtime on the CPU).
    """

    def __init__(
        self,
        encoder: EncoderSettings,
        *,
        registry: Path,
        model_name: str,
        model_path: Path | None = None,
        backend: str = "torch",
    ) -> None:
        self._fixed: SentimentModel | None = None
        self._watcher: ActiveModelWatcher[SentimentModel] | None = None
        if model_path is not None:
            self._fixed = _load(model_path, str(model_path), encoder, backend)
        else:
            loader: Callable[[ModelVersion], SentimentModel] = lambda v: _load(  # noqa: E731
                v.path, f"{model_name}@{v.version}", encoder, backend
            )
            self._watcher = ActiveModelWatcher(ModelRegistry(registry), model_name, loader)

    def current(self) -> SentimentModel:
        """The model to classify with; picks up a newly promoted version first (one that fails to load is
        logged, and the loaded version keeps classifying).

        Raises:
            ModelNotReady: No version is active in the registry yet, or none could be loaded.
        """
        if self._fixed is not None:
            return self._fixed
        assert self._watcher is not None
        return self._watcher.latest()
