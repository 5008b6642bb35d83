"""The text-interest model and its training: profiles, blend, fitting on validation, saving, provenance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recommender.blend_selection import KNN_SIMILARITIES, choose_cell, weight_grid, weight_neighbours
from recommender.data import Catalog, Interactions
from recommender.model import (
    BlendWeights,
    ModelConfig,
    TextInterestModel,
    history_text,
    mean_profiles,
    reading_windows,
    zscore,
)
from recommender.model_folders import MODEL_FILE
from recommender.protocol import evaluate, leave_last_out
from recommender.provenance import interactions_sha256, leaked_test_users, trained_on
from recommender.training import RecTrainConfig, behaviour_pairs, train_model
from textcore import Encoder, InvalidInput, NotFound

THEMES = {
    "astronomy": [
        "Telescope eyepiece 25mm for astronomy",
        "Star chart of the night sky for astronomy",
        "Telescope tripod mount for stargazing",
        "Moon filter for a telescope eyepiece",
        "Astronomy binoculars for stargazing",
        "Planetarium projector of stars and planets",
    ],
    "chemistry": [
        "Glass beaker 250 ml for the chemistry lab",
        "Chemistry test tubes set with rack",
        "Erlenmeyer flask of lab glass for chemistry",
        "Pipette set for the chemistry lab",
        "Bunsen burner for the chemistry lab",
        "pH test strips for chemistry experiments",
    ],
    "printing": [
        "PLA filament for a 3D printer",
        "Brass nozzle for a 3D printer extruder",
        "PETG filament for 3D printing",
        "Bed sticker for a 3D printer platform",
        "Resin for an SLA 3D printer",
        "Extruder gear kit for a 3D printer",
    ],
    "electronics": [
        "Soldering iron kit for electronics",
        "Digital multimeter for electronics repair",
        "Solderless breadboard for electronics prototyping",
        "Jumper wires for an electronics breadboard",
        "Solder wire for electronics soldering",
        "Oscilloscope probe for electronics testing",
    ],
}


def themed_catalog() -> Catalog:
    """24 items in four themes; item ids say the theme, texts share the theme's words."""
    ids, titles, texts = [], [], []
    for theme, names in THEMES.items():
        for k, name in enumerate(names):
            ids.append(f"{theme}-{k}")
            titles.append(name)
            texts.append(f"{name}. Category: {theme} supplies.")
    return Catalog.build(ids, titles, texts)


def themed_interactions(n_users: int = 48, length: int = 5, seed: int = 0) -> Interactions:
    """Each user buys `length` distinct items of one theme, one per time step."""
    rng = np.random.default_rng(seed)
    themes = list(THEMES)
    users, items, times = [], [], []
    for u in range(n_users):
        theme = themes[u % len(themes)]
        for t, k in enumerate(rng.permutation(len(THEMES[theme]))[:length]):
            users.append(f"user{u}")
            items.append(f"{theme}-{k}")
            times.append(float(1000 * u + t))
    n = len(users)
    return Interactions(
        np.array(users, dtype=object), np.array(items, dtype=object), np.array(times), np.full(n, np.nan)
    )


def tiny_config(base: Path, **changes: object) -> RecTrainConfig:
    settings: dict[str, object] = {
        "base_model": str(base),
        "epochs": 1,
        "max_pairs": 64,
        "batch_size": 8,
        "learning_rate": 1e-3,
        "max_length": 48,
        "device": "cpu",
        "precision": "fp32",
    }
    settings.update(changes)
    return RecTrainConfig(**settings)  # type: ignore[arg-type]


def test_history_text_is_newest_first_and_limited() -> None:
    assert history_text(["old", "mid", " new "], 2) == "new | mid"
    assert history_text([], 5) == ""


def test_zscore_standardises_rows_and_zeroes_constant_rows() -> None:
    scores = zscore(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores[0], [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
    np.testing.assert_array_equal(scores[1], [0.0, 0.0, 0.0])


def test_mean_profile_weights_recent_items_more() -> None:
    vectors = np.eye(3, dtype=np.float32)
    profiles = mean_profiles([[0, 1], [], [0, 1, 2]], vectors, decay=0.5, limit=2)
    # oldest first: item 0 weighs 0.5, the newest item 1 weighs 1
    np.testing.assert_allclose(profiles[0], np.array([0.5, 1.0, 0.0]) / np.sqrt(1.25), rtol=1e-6)
    np.testing.assert_array_equal(profiles[1], np.zeros(3))
    # limit 2 keeps only the last two items
    np.testing.assert_allclose(profiles[2], np.array([0.0, 0.5, 1.0]) / np.sqrt(1.25), rtol=1e-6)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ModelConfig(profile="sum"), r"profile: expected one of mean, text; found 'sum'"),
        (lambda: ModelConfig(recency_decay=0.0), r"recency_decay: expected a number in \(0, 1\]; found 0.0"),
        (lambda: BlendWeights(content=-1.0), r"expected finite blend weights >= 0 with a positive sum"),
        (lambda: BlendWeights(0.0, 0.0, 0.0), r"positive sum"),
        (lambda: ModelConfig(knn_alpha=1.5), r"knn_alpha: expected a number in \[0, 1\]; found 1.5"),
        (lambda: ModelConfig(knn_shrink=-1.0), r"knn_shrink: expected a number >= 0; found -1.0"),
        (lambda: RecTrainConfig(epochs=-1), r"epochs: expected an integer >= 0; found -1"),
        (lambda: RecTrainConfig(max_pairs=2), r"max_pairs: expected an integer >= 4; found 2"),
    ],
)
def test_configs_refuse_bad_values(build: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        build()  # type: ignore[operator]


def test_behaviour_pairs_read_history_titles_and_next_item_text() -> None:
    catalog = Catalog.build(
        ["a", "b", "c"], ["Alpha", "Beta", "Gamma"], ["Alpha text", "Beta text", "Gamma text"]
    )
    train = {"u1": ["a", "b", "unknown", "c"], "u2": ["b", "b"], "u3": ["c"]}
    pairs = behaviour_pairs(train, catalog, RecTrainConfig(history_items=1))
    # u1: a -> b, b -> c (the item outside the catalog is dropped); u2's repeat and u3's single item give none
    assert pairs.anchors == ["Alpha", "Beta"]
    assert pairs.positives == ["Beta text", "Gamma text"]
    two = behaviour_pairs(train, catalog, RecTrainConfig(history_items=2))
    assert two.anchors == ["Alpha", "Beta | Alpha"]


def test_behaviour_pairs_subsample_deterministically() -> None:
    catalog = themed_catalog()
    train = leave_last_out(themed_interactions().sequences()).train
    everything = behaviour_pairs(train, catalog, RecTrainConfig())
    first = behaviour_pairs(train, catalog, RecTrainConfig(max_pairs=10))
    again = behaviour_pairs(train, catalog, RecTrainConfig(max_pairs=10))
    assert len(everything) == 48 * 3 and len(first) == 10
    assert first == again
    assert set(first.anchors) <= set(everything.anchors)


def test_provenance_tells_whether_test_interactions_were_seen() -> None:
    data = themed_interactions(n_users=4)
    held = {"trained_on": trained_on(data, hold_out_last=True)}
    everything = {"trained_on": trained_on(data, hold_out_last=False)}
    assert held["trained_on"]["last_seen"]["user1"] == 1003.0  # user1's last (1004) was held out
    assert everything["trained_on"]["last_seen"]["user1"] == 1004.0
    assert held["trained_on"]["n_seen"] == 16 and everything["trained_on"]["n_seen"] == 20
    assert leaked_test_users(held, data) == 0
    assert leaked_test_users(everything, data) == 4
    assert leaked_test_users({"trained_on": None}, data) == 0
    # one more, later interaction for user0: a new test item the model has not seen, whatever it held out
    later = Interactions(
        np.append(data.users, "user0"),
        np.append(data.items, "chemistry-0"),
        np.append(data.times, 9999.0),
        np.append(data.values, np.nan),
    )
    assert interactions_sha256(later) != interactions_sha256(data)
    assert leaked_test_users(held, later) == 0
    assert leaked_test_users(everything, later) == 3
    # the hash ignores row order
    reverse = slice(None, None, -1)
    shuffled = Interactions(
        data.users[reverse], data.items[reverse], data.times[reverse], data.values[reverse]
    )
    assert interactions_sha256(shuffled) == interactions_sha256(data)


def test_train_model_saves_a_loadable_model_with_fitted_blend(tiny_model_dir: Path, tmp_path: Path) -> None:
    catalog, data = themed_catalog(), themed_interactions()
    output = tmp_path / "model"
    model, report = train_model(data, catalog, output, tiny_config(tiny_model_dir), sources={"file": "x.csv"})
    assert {"config.json", "model.safetensors", "metadata.json", MODEL_FILE} <= {
        p.name for p in output.iterdir()
    }
    assert report["encoder"]["trained"] is True and report["n_pairs"] == 64  # 96 subsampled
    validation = report["validation"]
    assert validation["n_users"] == 48
    components = validation["components"]
    assert {"item_knn", "item_knn_alpha_0.7", "popularity", "content_text", "content_mean_0.8"} <= set(
        components
    )
    # the co-occurrence variant in the blend is the one that ranked best on its own
    chosen = validation["chosen"]
    assert (chosen["knn_alpha"], chosen["knn_shrink"]) in KNN_SIMILARITIES
    alpha, decay = chosen["knn_alpha"], chosen["knn_decay"]
    name = ("item_knn" if alpha == 0.5 else f"item_knn_alpha_{alpha:g}") + (
        "" if decay == 1 else f"_recency_{decay:g}"
    )
    knn_figures = [m["ndcg@10"] for key, m in components.items() if key.startswith("item_knn")]
    assert len(knn_figures) == 6 and components[name]["ndcg@10"] == max(knn_figures)
    assert (model.config.knn_alpha, model.config.knn_shrink, model.config.knn_decay) == (
        alpha,
        chosen["knn_shrink"],
        decay,
    )
    # the grid contains every single component, so its best cell is at least as good as the best of them; the
    # chosen cell is the best neighbourhood, whose mean cannot exceed the best cell
    best_single = max(m["ndcg@10"] for m in components.values())
    best_cell = validation["best_cell"]["metrics"]["ndcg@10"]
    assert best_cell >= best_single
    assert validation["blend"]["ndcg@10"] <= best_cell
    assert 0 < validation["blend_neighbourhood_ndcg@10"] <= best_cell
    # co-occurrence is informative here (users stay in one theme): kNN beats popularity and gets weight
    assert components["item_knn"]["ndcg@10"] > components["popularity"]["ndcg@10"]
    assert model.weights.knn > 0
    assert validation["chosen"]["weights"] == {
        "content": model.weights.content,
        "knn": model.weights.knn,
        "popularity": model.weights.popularity,
    }
    trained = model.meta["trained_on"]
    assert trained["held_out"] == "last" and trained["interactions_sha256"] == interactions_sha256(data)
    assert model.meta["sources"] == {"file": "x.csv"}

    loaded = TextInterestModel.load(output, device="cpu", precision="fp32")
    assert (loaded.config, loaded.weights) == (model.config, model.weights)
    assert loaded.meta["trained_on"] == json.loads(json.dumps(trained))
    assert leaked_test_users(loaded.meta, data) == 0
    np.testing.assert_allclose(
        loaded.item_vectors(catalog.texts[:3]), model.item_vectors(catalog.texts[:3]), atol=1e-5
    )

    split = leave_last_out(data.sequences())
    metrics = evaluate(loaded.scorer(catalog, split.train), split, catalog)
    assert metrics["n_users"] == 48 and 0.0 <= metrics["ndcg@10"] <= 1.0


def test_blend_cell_is_the_best_neighbourhood_not_a_lone_peak() -> None:
    # an interior cell has six neighbours (one grid step moved between two weights), a corner two
    assert sorted(weight_neighbours((0.5, 0.3, 0.2))) == sorted(
        [(0.5, 0.3, 0.2), (0.6, 0.2, 0.2), (0.6, 0.3, 0.1), (0.4, 0.4, 0.2), (0.5, 0.4, 0.1),
         (0.4, 0.3, 0.3), (0.5, 0.2, 0.3)]
    )  # fmt: skip
    assert sorted(weight_neighbours((1.0, 0.0, 0.0))) == [(0.9, 0.0, 0.1), (0.9, 0.1, 0.0), (1.0, 0.0, 0.0)]

    peak, plateau = ("mean", 0.8, 0.0), ("text", 0.8, 0.3)
    table = {}
    for weights in weight_grid():
        table[peak, weights] = {"ndcg@10": 0.30 if weights == (0.5, 0.5, 0.0) else 0.05}
        near = sum(abs(a - b) for a, b in zip(weights, (0.6, 0.3, 0.1), strict=True)) < 0.25
        table[plateau, weights] = {"ndcg@10": 0.20 if near else 0.10}
    choice = choose_cell(table)
    assert (choice.key, choice.weights) == (plateau, (0.6, 0.3, 0.1))
    assert choice.metrics == {"ndcg@10": 0.20} and choice.smoothed_ndcg == pytest.approx(0.20)
    assert choice.best_cell == (peak, (0.5, 0.5, 0.0), {"ndcg@10": 0.30})
    assert choice.alone == {peak: {"ndcg@10": 0.05}, plateau: {"ndcg@10": 0.10}}


def test_untrained_model_keeps_the_base_encoder(tiny_model_dir: Path, tmp_path: Path) -> None:
    catalog, data = themed_catalog(), themed_interactions(n_users=8)
    output = tmp_path / "zero-shot"
    model, report = train_model(
        data, catalog, output, tiny_config(tiny_model_dir, epochs=0, hold_out_last=False)
    )
    assert report["encoder"] == {"trained": False}
    assert model.meta["trained_on"]["held_out"] == "none"
    assert leaked_test_users(model.meta, data) == 8
    base = Encoder.from_pretrained(tiny_model_dir, device="cpu", precision="fp32", max_length=48)
    loaded = TextInterestModel.load(output, device="cpu", precision="fp32")
    np.testing.assert_allclose(loaded.item_vectors(catalog.texts), base.encode(catalog.texts), atol=1e-5)


def test_too_few_pairs_to_fine_tune_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = themed_interactions(n_users=1, length=3)
    with pytest.raises(InvalidInput, match=r"expected at least 4 behaviour pairs .*; found 0"):
        train_model(data, themed_catalog(), tmp_path / "m", tiny_config(tiny_model_dir))
    empty = Interactions(*(np.array([], dtype=dtype) for dtype in (object, object, float, float)))
    with pytest.raises(InvalidInput, match=r"expected at least one interaction"):
        train_model(empty, themed_catalog(), tmp_path / "m", tiny_config(tiny_model_dir))


def test_interests_longer_than_the_encoder_reads_count_to_their_end(tiny_model_dir: Path) -> None:
    """Before, the encoder read the first 128 tokens (about 500 characters) of the 2,000 allowed and dropped
    the rest: interests named after that changed nothing, though the explanations named them."""
    model = TextInterestModel.from_base(tiny_model_dir, device="cpu", precision="fp32")
    tokenizer, limit = model.encoder.tokenizer, model.encoder.max_length
    short = "astronomy and telescopes"
    np.testing.assert_allclose(model.interest_vector(short), model.encoder.encode([short])[0], atol=1e-6)
    assert reading_windows(tokenizer, short, limit) == [(short, 3)]
    start = ", ".join(f"watering tomato seeds in the garden (tip number {n})" for n in range(19))
    assert len(tokenizer(start)["input_ids"]) > limit  # the end lies beyond what the encoder reads at once
    longer = f"{start}; telescopes for astronomy"
    vector = model.interest_vector(longer)
    assert np.linalg.norm(vector) == pytest.approx(1.0, rel=1e-5)
    assert not np.allclose(vector, model.interest_vector(start), atol=1e-4)
    windows = reading_windows(tokenizer, longer, limit)
    assert len(windows) > 1 and windows[-1][0].endswith("telescopes for astronomy")
    assert sum(n for _, n in windows) == len(tokenizer(longer, add_special_tokens=False)["input_ids"])
    for text, tokens in windows:  # each read whole, cut between phrases, nothing left out
        assert len(tokenizer(text)["input_ids"]) == tokens + 2 <= limit
        assert text.startswith("watering") or text.startswith("telescopes"), text
    lengths = np.array([n for _, n in windows], dtype=np.float32)
    expected = lengths @ model.encoder.encode([t for t, _ in windows])
    np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), atol=1e-5)


def test_profiles_cold_start_and_blend(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = TextInterestModel.from_base(tiny_model_dir, device="cpu", precision="fp32")
    catalog = themed_catalog()
    vectors = model.item_vectors(catalog.texts, chunk=5)
    assert vectors.shape == (24, model.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    mean = model.profile(vectors[:3], catalog.titles[:3])
    np.testing.assert_allclose(mean, mean_profiles([[0, 1, 2]], vectors, 0.8, 20)[0], rtol=1e-6)
    np.testing.assert_array_equal(model.profile(np.zeros((0, model.dim)), []), np.zeros(model.dim))
    text_model = TextInterestModel(model.encoder, ModelConfig(profile="text"), model.weights, {})
    text = text_model.profile(vectors[:3], catalog.titles[:3])
    expected = model.encoder.encode([history_text(catalog.titles[:3], 5)])[0]
    np.testing.assert_allclose(text, expected, atol=1e-6)
    interest = model.interest_vector("astronomy and telescopes")
    assert interest.shape == (model.dim,) and np.linalg.norm(interest) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(InvalidInput, match=r"expected interests as non-empty free text"):
        model.interest_vector("  ")
    content = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    knn = np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    only_content = TextInterestModel(model.encoder, model.config, BlendWeights(1.0, 0.0, 0.0), {})
    np.testing.assert_allclose(only_content.blend(content, knn, None), zscore(content))
    mixed = TextInterestModel(model.encoder, model.config, BlendWeights(0.5, 0.5, 0.0), {})
    np.testing.assert_allclose(mixed.blend(content, knn, None), 0.5 * zscore(content) + 0.5 * zscore(knn))
    with pytest.raises(InvalidInput, match=r"expected component shape \(2, 3\); found \(3,\)"):
        mixed.blend(content, np.zeros(3), None)
    # a zero-shot model saved to a new folder writes the encoder too, and loads back
    model.save(tmp_path / "saved")
    again = TextInterestModel.load(tmp_path / "saved", device="cpu", precision="fp32")
    assert again.weights == BlendWeights() and again.meta["trained_on"] is None
    np.testing.assert_allclose(again.item_vectors(catalog.texts[:2]), vectors[:2], atol=1e-5)
    with pytest.raises(NotFound, match=r"expected a recommender model folder with recommender.json"):
        TextInterestModel.load(tiny_model_dir)


def test_minilm_content_profile_finds_the_users_theme(tmp_path: Path) -> None:
    # the real MiniLM, zero-shot: item text alone predicts the next item of a themed history
    catalog, data = themed_catalog(), themed_interactions()
    model, report = train_model(
        data, catalog, tmp_path / "minilm", RecTrainConfig(epochs=0, device="cpu", max_validation_users=48)
    )
    components = report["validation"]["components"]
    assert components["content_mean_0.8"]["ndcg@10"] > components["popularity"]["ndcg@10"] + 0.2
    split = leave_last_out(data.sequences())
    content_only = TextInterestModel(model.encoder, model.config, BlendWeights(1.0, 0.0, 0.0), {})
    assert evaluate(content_only.scorer(catalog, split.train), split, catalog)["hr@10"] > 0.9


def test_the_closest_history_item_can_share_the_content_score() -> None:
    from recommender.model import max_similarities  # noqa: PLC0415 - kept beside its test

    vectors = np.eye(3, dtype=np.float32)  # three orthogonal items
    closest = max_similarities([[0, 1]], vectors, vectors, decay=0.5, limit=20)[0]
    # item 1 is the newest (weight 1), item 0 older (weight 0.5); item 2 resembles neither
    assert closest.tolist() == pytest.approx([0.5, 1.0, 0.0])
    assert max_similarities([[]], vectors, vectors, 0.5, 20).tolist() == [[0.0, 0.0, 0.0]]
    with pytest.raises(InvalidInput, match="max_share"):
        ModelConfig(max_share=1.5)
