"""The optional cross-encoder rescorer: its arithmetic, `recommender train-rescorer`, `evaluate` with it, and
the real app re-ordering its answers by it (the tiny random BERT trained by the CLI on the themed data)."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recommender import create_app
from recommender.data import Catalog, item_text
from recommender.model import history_text
from recommender.rescorer_training import (
    TOP_NS,
    WEIGHTS,
    Query,
    RescorerTrainConfig,
    _Candidates,
    hard_negative_pairs,
    rescored_ranks,
)
from recommender.rescoring import RESCORER_DIR, Rescoring, combine, lift, read_settings, write_settings
from tests.recommender.conftest import (
    catalog_items,
    event_bodies,
    invoke,
    last_json,
    rec_settings,
    write_catalog,
    write_interactions,
)
from textcore import InvalidInput, Reranker

CPU = ("--device", "cpu", "--precision", "fp32")
Trained = tuple[Path, dict[str, Any]]  # a model folder with a rescorer, and train-rescorer's report


def test_lift_puts_the_rescored_on_top_in_their_new_order() -> None:
    scores = np.array([0.9, 0.1, 0.8, 0.5, -np.inf, 0.7], dtype=np.float32)
    top = np.array([0, 2, 5])
    lifted = lift(scores, top, np.array([0.0, 2.0, 1.0], dtype=np.float32))
    assert np.argsort(-lifted, kind="stable").tolist()[:4] == [2, 5, 0, 3]
    assert lifted[3] == scores[3] and lifted[1] == scores[1] and lifted[4] == -np.inf
    assert lifted[0] > scores[3]  # the lowest re-scored item still beats the best one left alone


def test_weight_zero_keeps_the_blend_order() -> None:
    blend = np.array([3.0, 2.0, 1.0, 0.5], dtype=np.float32)
    relevance = np.array([0.1, 0.2, 0.9, 0.8], dtype=np.float32)
    assert np.argsort(-combine(blend, relevance, 0.0)).tolist() == [0, 1, 2, 3]
    assert np.argsort(-combine(blend, relevance, 4.0)).tolist()[0] == 2


def test_rescored_ranks_move_only_targets_inside_the_top() -> None:
    candidates = _Candidates(
        tops=[np.array([4, 7, 1]), np.array([2, 3, 5])],
        blend=[np.array([3.0, 2.0, 1.0]), np.array([3.0, 2.0, 1.0])],
        targets=np.array([1, 9]),  # user 0's target is third in its top; user 1's is outside (rank 12)
        blend_ranks=np.array([3, 12]),
    )
    relevance = [np.array([0.0, 0.1, 0.9]), np.array([0.0, 0.0, 1.0])]
    assert rescored_ranks(candidates, relevance, 3, 0.0).tolist() == [3, 12]
    assert rescored_ranks(candidates, relevance, 3, 4.0).tolist() == [1, 12]
    assert rescored_ranks(candidates, relevance, 2, 4.0).tolist() == [3, 12]  # not among the top 2


def test_rescorer_rows_come_from_queries_whose_target_is_in_the_top() -> None:
    ids = [f"i{k}" for k in range(8)]
    catalog = Catalog.build(ids, [f"t{k}" for k in range(8)], [f"x{k}" for k in range(8)])
    fixed = np.array([8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0], dtype=np.float32)  # item k ranks k-th

    def scorer(histories: list[list[int]]) -> np.ndarray:
        return np.tile(fixed, (len(histories), 1))

    queries = [
        Query([0], 7, [0, 7]),  # the target ranks last: passed over
        Query([0], 2, [0, 1, 2]),  # item 1 is liked: never a negative
        Query([3], 4, [3, 4]),
    ]
    cfg = RescorerTrainConfig(negatives=2, candidates=4)
    pairs, scanned = hard_negative_pairs(scorer, catalog, queries, cfg, history_items=5, limit=5)
    assert scanned == 3
    assert pairs.queries == ["t0"] * 3 + ["t3"] * 3
    assert pairs.labels == [1.0, 0.0, 0.0] * 2
    assert pairs.passages[0] == "x2" and set(pairs.passages[1:3]) <= {"x3", "x4", "x5"}
    assert pairs.passages[3] == "x4" and set(pairs.passages[4:6]) <= {"x0", "x1", "x2"}
    capped, _ = hard_negative_pairs(scorer, catalog, queries, cfg, history_items=5, limit=1)
    assert capped.labels == [1.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"top_n": 0}, "top_n: expected an integer in [1, 1000]; found 0"),
        ({"weight": -1.0}, "weight: expected a finite number >= 0; found -1.0"),
        ({"weight": float("nan")}, "weight: expected a finite number >= 0"),
        ({"max_length": 8}, "max_length: expected an integer in [16, 8192]; found 8"),
    ],
)
def test_rescoring_settings_refuse_bad_values(values: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        Rescoring(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def rescored_model(trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A copy of the CLI-trained model with a rescorer trained by `recommender train-rescorer`."""
    folder = tmp_path_factory.mktemp("rescorer")
    model = folder / "model"
    shutil.copytree(trained_model_dir, model)
    result = invoke(
        "train-rescorer", "--model", model, "--interactions", write_interactions(folder / "interactions.csv"),
        "--items", write_catalog(folder / "items.csv"), "--negatives", 2, "--candidates", 6,
        "--batch-size", 8, "--learning-rate", 1e-3, "--max-length", 64, *CPU,
    )  # fmt: skip
    return model, last_json(result)


def test_train_rescorer_fits_a_weight_on_validation_users(rescored_model: Trained) -> None:
    model, report = rescored_model
    assert report["output"] == str(model / RESCORER_DIR)
    # 16 users of 5 items: the last is held out, the 4th validates, positions 1 and 2 of the rest are the
    # queries; behaviour stays within a theme, so the model ranks each next item among its top 6
    assert report["n_queries"] == 32 and report["n_rows"] == 32 * 3
    fit = report["fit"]
    assert fit["n_users"] == 16
    grid = fit["grid_ndcg@10"]
    assert set(grid) == {f"top_{n}" for n in TOP_NS}
    assert all(set(cells) == {f"{w:g}" for w in WEIGHTS} for cells in grid.values())
    # weight 0 is the blend alone, whatever the number re-scored
    assert all(cells["0"] == pytest.approx(fit["blend"]["ndcg@10"]) for cells in grid.values())
    chosen = fit["chosen"]
    best = max(max(cells.values()) for cells in grid.values())
    assert chosen["metrics"]["ndcg@10"] == pytest.approx(best)
    assert fit["active"] == (chosen["weight"] > 0)
    assert report["rescoring"] == {k: v for k, v in chosen.items() if k != "metrics"}
    rescoring, meta = read_settings(model / RESCORER_DIR)
    assert rescoring.weight == chosen["weight"] and rescoring.max_length == 64
    assert meta["trained_on"]["held_out"] == "last"
    assert not (model / f".{RESCORER_DIR}.tmp").exists()


def forced(model: Path, weight: float, top_n: int = 5) -> Path:
    """Set the rescorer's weight by hand (its settings file is plain JSON a team may edit)."""
    rescoring, meta = read_settings(model / RESCORER_DIR)
    write_settings(model / RESCORER_DIR, Rescoring(top_n, weight, rescoring.history_items, 64), meta)
    return model


def test_evaluate_reports_the_blend_beside_the_rescored_model(
    rescored_model: Trained, tmp_path: Path
) -> None:
    model = forced(rescored_model[0], 2.0)
    interactions, items = write_interactions(tmp_path / "i.csv"), write_catalog(tmp_path / "c.csv")
    data = ["--interactions", interactions, "--items", items]
    report = last_json(invoke("evaluate", "--model", model, *data, *CPU))
    plain_keys = {"model", "popularity", "item_knn", "n_users", "n_held_out_outside_catalog"}
    assert set(report) == plain_keys | {"blend", "rescorer"}
    assert report["rescorer"]["weight"] == 2.0 and report["rescorer"]["top_n"] == 5
    # re-scoring only re-orders each user's top 5: a target outside it keeps its rank
    assert report["model"]["hr@10"] == report["blend"]["hr@10"]
    plain = last_json(invoke("evaluate", "--model", model, *data, "--no-rescorer", *CPU))
    assert set(plain) == plain_keys
    assert plain["model"] == report["blend"]
    off = last_json(invoke("evaluate", "--model", forced(model, 0.0), *data, *CPU))
    assert "rescorer" not in off and off["model"] == report["blend"]  # weight 0: never used


def test_the_app_reorders_its_top_candidates_by_the_rescorer(
    rescored_model: Trained, tmp_path: Path, sqlite_url: str
) -> None:
    model = forced(rescored_model[0], 4.0, top_n=4)
    history = ["astro-0", "lab-1", "garden-2"]  # mixed interests, so the blend's top has several themes
    body = {"history": history, "items": [i["id"] for i in catalog_items() if i["id"] not in history]}
    answers = {}
    for rescore in (False, True):
        settings = rec_settings(tmp_path, sqlite_url, "unused", model_path=model, rescore=rescore)
        with TestClient(create_app(settings)) as client:
            if not rescore:
                assert client.post("/v1/items", json={"items": catalog_items()}).status_code == 200
                assert client.post("/v1/events", json={"events": event_bodies()}).status_code == 201
            answers[rescore] = client.post("/v1/score", json=body).json()
            ready = client.get("/readyz").json()["checks"]
            assert ready.get("rescorer") == ("top 4 at weight 4" if rescore else None)
    blend, rescored = answers[False], answers[True]
    top = [r["item_id"] for r in blend[:4]]
    # the same four on top, re-ordered by z(blend) + 4 z(relevance) computed here with the core's Reranker
    texts = {i["id"]: item_text(i["title"], [i["text"]]) for i in catalog_items()}
    titles = {i["id"]: i["title"] for i in catalog_items()}
    relevance = Reranker.load(model / RESCORER_DIR, device="cpu", precision="fp32", max_length=64).score(
        history_text([titles[i] for i in history], 5), [texts[i] for i in top]
    )
    expected = np.argsort(-combine(np.array([r["score"] for r in blend[:4]]), relevance, 4.0), kind="stable")
    assert [r["item_id"] for r in rescored[:4]] == [top[i] for i in expected]
    assert [r["item_id"] for r in rescored[4:]] == [r["item_id"] for r in blend[4:]]  # the rest as before
    assert all(a["score"] >= b["score"] for a, b in itertools.pairwise(rescored))
    assert rescored[0]["explanation"]["because"]  # still explained by history items


@pytest.mark.parametrize("epochs", [0, 1])
def test_training_a_model_again_into_its_folder_removes_its_rescorer(
    rescored_model: Trained, tmp_path: Path, tiny_model_dir: Path, sqlite_url: str, epochs: int
) -> None:
    model = tmp_path / "model"
    shutil.copytree(rescored_model[0], model)
    forced(model, 2.0)
    (model / f".{RESCORER_DIR}.tmp").mkdir()  # as a train-rescorer stopped midway leaves it
    interactions, items = write_interactions(tmp_path / "i.csv"), write_catalog(tmp_path / "c.csv")
    data = ["--interactions", interactions, "--items", items]
    last_json(invoke(
        "train", *data, "--output", model, "--base-model", tiny_model_dir, "--epochs", epochs,
        "--batch-size", 8, "--max-pairs", 64, "--max-length", 48, *CPU,
    ))  # fmt: skip
    # the rescorer was fitted on the previous encoder and blend: neither evaluate nor the service uses it
    assert not (model / RESCORER_DIR).exists() and not (model / f".{RESCORER_DIR}.tmp").exists()
    assert set(last_json(invoke("evaluate", "--model", model, *data, *CPU))) == {
        "model", "popularity", "item_knn", "n_users", "n_held_out_outside_catalog",
    }  # fmt: skip
    settings = rec_settings(tmp_path, sqlite_url, "unused", model_path=model)
    with TestClient(create_app(settings)) as client:
        assert "rescorer" not in client.get("/readyz").json()["checks"]
