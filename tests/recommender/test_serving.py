"""The recommender's scoring in process: explanations for every candidate checked against a brute-force
computation, the vectorised helpers, the response bytes against the documented schema, and thread limits."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import TypeAdapter

from recommender.behaviour import Behaviour
from recommender.catalog import ItemCatalog
from recommender.database import Database
from recommender.explanations import best_rows, matched_phrases
from recommender.item_records import ItemRecord
from recommender.model import TextInterestModel
from recommender.profiles import Query
from recommender.schemas import ScoredOut, scored_json
from recommender.serving import Recommender, ScoredItem
from recommender.torch_threads import intra_op_threads

ITEMS = [f"it-{k}" for k in range(60)]


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> TextInterestModel:
    return TextInterestModel.from_base(tiny_model_dir, device="cpu", precision="fp32")


class HashedVectors:
    """A stand-in item tower: unit vectors seeded by each text; remembers torch's threads while it runs."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.threads_seen: list[int] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.threads_seen.append(torch.get_num_threads())
        rows = [np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)) for t in texts]
        out = np.stack([rng.standard_normal(self.dim) for rng in rows]) if texts else np.zeros((0, self.dim))
        unit: np.ndarray = (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)
        return unit.reshape(len(texts), self.dim)


@pytest.fixture
def embed(model: TextInterestModel) -> HashedVectors:
    return HashedVectors(model.dim)


@pytest.fixture
def recommender(
    sqlite_url: str, model: TextInterestModel, embed: HashedVectors, tmp_path: Path
) -> Iterator[Recommender]:
    db = Database(sqlite_url)
    db.migrate()
    catalog = ItemCatalog(db, embed, model.dim, tmp_path / "index.npz", "hashed", 64)
    catalog.sync()
    catalog.upsert([ItemRecord(item, f"Item {item}") for item in ITEMS])
    rng = np.random.default_rng(3)
    behaviour = Behaviour()
    users, items = rng.integers(0, 40, 600), rng.zipf(1.4, 600) % 60  # a long tail of popular items
    behaviour.add((f"u{int(u)}", ITEMS[int(i)]) for u, i in zip(users, items, strict=True))
    try:
        yield Recommender(db, model, catalog, behaviour)
    finally:
        db.dispose()


def brute_force_reasons(rec: Recommender, history: list[str], item: str) -> list[tuple[str, float]]:
    """The history items to name for `item`: content cosine plus co-occurrence, not itself, stable order."""
    snapshot = rec.behaviour.snapshot()
    strength = rec.catalog.vectors(history) @ rec.catalog.vectors([item])[0]
    strength = strength + snapshot.pair_similarity(history, [item])[:, 0]
    allowed = [h for h in np.argsort(-strength, kind="stable").tolist() if history[h] != item]
    return [(history[h], round(float(strength[h]), 4)) for h in allowed[:3]]


@pytest.mark.parametrize("length", [6, 2])
def test_every_scored_item_names_its_closest_history_items(recommender: Recommender, length: int) -> None:
    history = ITEMS[3 : 3 + 7 * length : 7]  # some candidates are history items themselves
    results = recommender.score(Query(history=tuple(history)), ITEMS)
    assert sorted(r.item_id for r in results) == sorted(ITEMS)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    for result in results:
        expected = brute_force_reasons(recommender, history, result.item_id)
        named = [(m.item_id, m.similarity) for m in result.explanation.because]
        assert [i for i, _ in named] == [i for i, _ in expected]
        assert [s for _, s in named] == pytest.approx([s for _, s in expected], abs=2e-4)
        assert all(m.title == f"Item {m.item_id}" for m in result.explanation.because)
        assert result.title == f"Item {result.item_id}" and result.explanation.matched_interests == []
    own = [r for r in results if r.item_id in history]
    assert own and all(len(r.explanation.because) == min(3, length - 1) for r in own)


def test_scored_json_is_the_documented_body(recommender: Recommender) -> None:
    results = recommender.score(Query(history=tuple(ITEMS[:5])), ITEMS[10:20])
    body = scored_json(results)
    schema = TypeAdapter(list[ScoredOut])
    parsed = schema.validate_json(body)
    assert parsed == schema.validate_python(results, from_attributes=True)
    assert body == schema.dump_json(parsed)  # the same bytes as going through the response models
    assert [p.item_id for p in parsed] == [r.item_id for r in results]
    assert all(p.explanation.because for p in parsed)


def test_best_rows_are_a_stable_top_k_of_each_column() -> None:
    strength = np.random.default_rng(0).standard_normal((9, 50)).astype(np.float32)
    strength[:, 0] = [0.5, 1.0, 1.0, 0.2, 1.0, -np.inf, 0.0, 0.0, 0.3]  # ties: earlier rows first
    rows, values = best_rows(strength, 3)
    expected = np.argsort(-strength, axis=0, kind="stable")[:3]
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_array_equal(values, np.take_along_axis(strength, expected, axis=0))
    assert rows[:, 0].tolist() == [1, 2, 4]
    few, few_values = best_rows(strength[:2], 3)  # fewer rows than asked: all of them, sorted
    np.testing.assert_array_equal(few, np.argsort(-strength[:2], axis=0, kind="stable"))
    assert few_values.shape == (2, 50)


def test_matched_phrases_keep_the_ones_close_to_the_best() -> None:
    phrases = ["astronomy", "chemistry", "gardening", "cooking"]
    axes = np.eye(4, dtype=np.float32)
    vectors = np.array(
        [
            [0.9, 0.88, 0.1, 0.0],  # two close matches, best first
            [0.1, 0.1, 0.15, 0.1],  # nothing reaches the floor of 0.2
            [0.3, 0.3, 0.3, 0.3],  # four ties: the first three, in phrase order
            [0.0, 0.5, 0.0, 0.6],
        ],
        dtype=np.float32,
    )
    assert matched_phrases(phrases, axes, vectors) == [
        ["astronomy", "chemistry"],
        [],
        ["astronomy", "chemistry", "gardening"],
        ["cooking"],
    ]
    assert matched_phrases([], np.zeros((0, 4), np.float32), vectors) == [[], [], [], []]


def test_embedding_and_encoder_calls_run_on_the_configured_torch_threads(
    recommender: Recommender, embed: HashedVectors
) -> None:
    def in_worker() -> tuple[int, int, int]:
        before = torch.get_num_threads()
        wanted = 1 if before != 1 else 2
        recommender.embed_threads = wanted
        recommender.upsert_items([ItemRecord("fresh", "A fresh item")])
        with intra_op_threads(wanted):
            inside = torch.get_num_threads()
        assert torch.get_num_threads() == before  # restored
        with intra_op_threads(None):
            assert torch.get_num_threads() == before  # None: left alone
        return before, wanted, inside

    with ThreadPoolExecutor(1) as pool:  # a worker thread, as the service's are
        before, wanted, inside = pool.submit(in_worker).result()
        assert pool.submit(torch.get_num_threads).result() == before  # restored after the upsert too
    assert embed.threads_seen[-1] == wanted and inside == wanted
    assert isinstance(recommender.score(Query(history=("fresh",)), ["it-1"])[0], ScoredItem)
