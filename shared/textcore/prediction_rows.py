"""What `textcore predict` prints for each text: a classifier's label and probabilities, or a tagger's
entities, one JSON-ready row per text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textcore.errors import InvalidInput

Rows = Callable[[list[str]], list[dict[str, Any]]]


def label_rows(model: Path, device: str, precision: str, batch_size: int, backend: str) -> Rows:
    """What `predict` prints of a classifier's predictions of some texts, one row per text."""
    from textcore.evaluation import load_predictor  # noqa: PLC0415

    classifier = load_predictor(
        model, backend=backend, device=device, precision=precision, batch_size=batch_size
    )

    def rows(texts: list[str]) -> list[dict[str, Any]]:
        out = []
        for text, p in zip(texts, classifier.predict(texts), strict=True):
            row = {"text": text, "label": p.label, "confidence": p.confidence, "probabilities": p.scores}
            if classifier.multi_label:
                row["labels"] = list(p.labels)
            out.append(row)
        return out

    return rows


def entity_rows(model: Path, device: str, precision: str, batch_size: int, backend: str) -> Rows:
    """What `predict` prints of a tagger's entities in some texts, one row per text."""
    if backend != "torch":
        raise InvalidInput(f"expected backend torch for a tagger; found {backend!r}")
    from textcore.tagger import Tagger  # noqa: PLC0415

    tagger = Tagger.load(model, device=device, precision=precision, batch_size=batch_size)

    def rows(texts: list[str]) -> list[dict[str, Any]]:
        return [
            {"text": text, "entities": [entity.to_dict() for entity in entities]}
            for text, entities in zip(texts, tagger.tag(texts), strict=True)
        ]

    return rows
