"""The cross-encoder re-ranker: scored pairs, hard-negative mining, training, serving and the command line."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.shared.test_cli import invoke_cli, ok
from textcore.artifacts import write_metadata
from textcore.data import ScoredPairs, read_scored_pairs
from textcore.embeddings import Encoder
from textcore.errors import InvalidInput
from textcore.evaluation import load_predictor
from textcore.metrics import reranking_metrics
from textcore.mining import mine_hard_negatives
from textcore.models import load_backbone
from textcore.reranker import Reranker, evaluate_reranker
from textcore.training import TrainConfig, TrainResult, train_from_files, train_reranker
from textcore.training.cross_encoder import CrossEncoderTask
from textcore.training.loop import train

KEYWORDS = ["password", "refund", "parcel", "invoice", "mortgage", "pension", "insurance", "loan"]
UNSEEN = ["cheque", "overdraft", "passport", "voucher"]
PASSAGE = "{kw}: what to know about your {kw}, and how our team handles every {kw} request."


def keyword_pairs(keywords: list[str], template: str, seed: int = 0, negatives: int = 3) -> ScoredPairs:
    """One query per keyword; the relevant passage repeats the query's keyword, the others name another."""
    rng = random.Random(seed)
    queries, passages, labels = [], [], []
    for kw in keywords:
        others = rng.sample([x for x in keywords if x != kw], negatives)
        for candidate, label in [(kw, 1.0), *((o, 0.0) for o in others)]:
            queries.append(template.format(kw=kw))
            passages.append(PASSAGE.format(kw=candidate))
            labels.append(label)
    return ScoredPairs(queries, passages, labels)


def tiny_config(model: Path, **changes: object) -> TrainConfig:
    base = TrainConfig(
        task="cross-encoder",
        base_model=str(model),
        epochs=2,
        batch_size=8,
        learning_rate=2e-3,
        head_learning_rate=1e-2,
        max_length=48,
        evals_per_epoch=1,
        precision="fp32",
        seed=3,
    )
    return base.replace(**changes)


@pytest.fixture(scope="module")
def tiny_reranker(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    data = keyword_pairs(KEYWORDS, "I have a question about my {kw}")
    validation = keyword_pairs(KEYWORDS, "help me with the {kw} please", seed=1)
    output = tmp_path_factory.mktemp("reranker") / "model"
    return train_reranker(data, tiny_config(tiny_model_dir), output, validation=validation, progress=False)


# data


def test_scored_pairs_check_themselves_and_split_by_query() -> None:
    pairs = keyword_pairs(KEYWORDS, "about my {kw}")
    train_part, validation = pairs.split(0.25, seed=5)
    assert len(train_part) + len(validation) == len(pairs)
    assert len(set(validation.queries)) == 2  # a quarter of 8 queries, with all 4 rows of each
    assert not set(train_part.queries) & set(validation.queries)
    assert len(validation) == 8
    assert pairs.split(0.25, seed=5) == (train_part, validation)
    assert pairs.subset([1, 0]).labels == [0.0, 1.0]
    with pytest.raises(InvalidInput, match="as many queries, passages and labels; found 2, 1 and 2"):
        ScoredPairs(["q", "q"], ["p"], [1.0, 0.0])
    with pytest.raises(InvalidInput, match=r"labels in \[0, 1\]; found 2.0"):
        ScoredPairs(["q"], ["p"], [2.0])
    with pytest.raises(InvalidInput, match="at least 2 distinct queries"):
        ScoredPairs(["q", "q"], ["a", "b"], [1.0, 0.0]).split(0.5, seed=0)


def test_read_scored_pairs_from_csv_and_jsonl(tmp_path: Path) -> None:
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text("q,p,rel\nlost card,Block it in the app,1\nlost card,Opening hours,0.0\n", "utf-8")
    assert read_scored_pairs(csv_file, "q", "p", "rel") == ScoredPairs(
        ["lost card", "lost card"], ["Block it in the app", "Opening hours"], [1.0, 0.0]
    )
    jsonl = tmp_path / "pairs.jsonl"
    rows = [{"q": "refund", "p": "Refunds take 5 days", "rel": True}, {"q": "refund", "p": "x", "rel": 0.25}]
    jsonl.write_text("\n".join(json.dumps(r) for r in rows), "utf-8")
    assert read_scored_pairs(jsonl, "q", "p", "rel").labels == [1.0, 0.25]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("q,p,rel\na,b,yes\n", r"row 1 has 'rel' = 'yes'; expected a number in \[0, 1\]"),
        ("q,p,rel\na,b,1\na,c,1.5\n", r"row 2 has 'rel' = '1.5'"),
        ("q,p,rel\na,b,nan\n", r"row 1 has 'rel' = 'nan'"),
        ("q,p,rel\na,b,\n", r"row 1 has 'rel' = ''"),
        ("q,p,label\na,b,1\n", r"expected column\(s\) rel; found q, p, label"),
        ("q,p,rel\n,b,1\n", r"row 1 has an empty 'q'"),
        ("q,p,rel\n", "expected at least one data row"),
    ],
)
def test_read_scored_pairs_explains_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content, "utf-8")
    with pytest.raises(InvalidInput, match=message):
        read_scored_pairs(path, "q", "p", "rel")


def test_config_and_metrics_of_the_task() -> None:
    config = TrainConfig(task="cross-encoder")
    assert config.selection_metric == "mrr@10"
    assert TrainConfig(task="cross-encoder", metric="accuracy").selection_metric == "accuracy"
    with pytest.raises(InvalidInput, match="metric: expected one of mrr@10, accuracy for cross-encoder"):
        TrainConfig(task="cross-encoder", metric="macro_f1")
    queries = ["a", "a", "a", "b", "b", "c"]
    labels = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    scores = np.array([0.9, 0.2, 0.1, 0.7, 0.7, 0.4])
    # a ranks its answer first; b ties with a wrong passage, which counts against it (rank 2); c has no answer
    assert reranking_metrics(queries, labels, scores) == {"mrr@10": 0.75, "accuracy": 5 / 6}


# mining


def test_mining_prefers_hard_negatives_and_leaves_out_the_positive_and_its_copies() -> None:
    encoder = Encoder.from_pretrained("minilm", max_length=64)
    passages = [
        "To reset your password, open settings and choose reset password.",
        "To  reset your password, open settings and choose  reset password.",  # the positive, other spacing
        "Change your password every few months to keep the account safe.",  # hard: same topic, not the answer
        "Parcels are delivered within three working days.",
        "Our branches are open from nine to five.",
    ]
    queries = ["How do I reset my password?", "When do parcels arrive?"]
    rows = mine_hard_negatives(encoder, queries, passages, [0, 3], per_query=1, candidates=1)
    assert rows == ScoredPairs(
        [queries[0], queries[0], queries[1], queries[1]],
        [passages[0], passages[2], passages[3], rows.passages[3]],
        [1.0, 0.0, 1.0, 0.0],
    )
    assert rows.passages[3] != passages[3]
    several = mine_hard_negatives(encoder, queries, passages, [0, 3], per_query=3, candidates=3)
    first = [
        p for q, p, y in zip(several.queries, several.passages, several.labels, strict=True) if y == 0.0
    ][:3]
    assert set(first) == {passages[2], passages[3], passages[4]}  # every distinct non-answer, no copy of it


def test_mining_is_seeded_and_explains_bad_arguments(tiny_model_dir: Path) -> None:
    encoder = Encoder(load_backbone(tiny_model_dir), precision="fp32", max_length=32)
    passages = [PASSAGE.format(kw=kw) for kw in KEYWORDS]
    queries = [f"about my {kw}" for kw in KEYWORDS]
    positives = list(range(len(KEYWORDS)))
    first = mine_hard_negatives(encoder, queries, passages, positives, per_query=2, candidates=5, seed=1)
    assert first == mine_hard_negatives(
        encoder, queries, passages, positives, per_query=2, candidates=5, seed=1
    )
    assert len(first) == 3 * len(queries)
    for query, positive in zip(queries, passages, strict=True):
        rows = [
            (p, y) for q, p, y in zip(first.queries, first.passages, first.labels, strict=True) if q == query
        ]
        assert rows[0] == (positive, 1.0)
        assert all(y == 0.0 and p != positive for p, y in rows[1:])
    for args, message in [
        ((queries, passages, positives[:-1]), "one positive passage index per query"),
        ((queries[:1], passages, [8]), r"positive indices in \[0, 8\); found 8"),
        ((queries[:1], ["same", " same "], [0]), "at least two distinct passages"),
        (("one query", passages, [0]), "found a single string"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            mine_hard_negatives(encoder, *args)
    with pytest.raises(InvalidInput, match="1 <= per_query <= candidates"):
        mine_hard_negatives(encoder, queries, passages, positives, per_query=4, candidates=3)


# training and serving


def test_real_minilm_learns_to_rank_passages_on_unseen_keywords(tmp_path: Path) -> None:
    # Relevant passages share the query's keyword. The validation queries use other keywords and another
    # phrasing, so only a model that compares the two texts (not one that memorised keywords) ranks them well.
    data = keyword_pairs(KEYWORDS, "I have a question about my {kw}")
    validation = keyword_pairs(UNSEEN, "what happens to my {kw} now?", seed=1, negatives=2)
    config = TrainConfig(
        task="cross-encoder",
        epochs=2,
        batch_size=8,
        max_length=48,
        learning_rate=3e-4,
        head_learning_rate=3e-3,
        evals_per_epoch=1,
    )
    result = train_reranker(data, config, tmp_path / "m", validation=validation, progress=False)
    chance = np.mean([1, 1 / 2, 1 / 3])  # the MRR of a random order of three candidates
    assert result.metrics["mrr@10"] >= chance + 0.25, result.metrics
    reranker = Reranker.load(tmp_path / "m")
    scores = reranker.score(
        "any news on my voucher?", [PASSAGE.format(kw=k) for k in ("passport", "voucher")]
    )
    assert scores.dtype == np.float32
    assert scores[1] > scores[0]


def test_trained_folder_and_recorded_figures_match_the_saved_model(tiny_reranker: TrainResult) -> None:
    folder = tiny_reranker.output
    for name in (
        "config.json",
        "model.safetensors",
        "head.safetensors",
        "tokenizer.json",
        "training/curves.png",
    ):
        assert (folder / name).is_file(), name
    assert not (folder / "training" / "checkpoint").exists()
    assert json.loads((folder / "labels.json").read_text()) == {"labels": ["relevant"], "multi_label": False}
    meta = tiny_reranker.metadata
    assert meta["task"] == "cross-encoder"
    assert meta["data"]["train"] == {"rows": 32, "queries": 8, "relevant": 8}
    validation = keyword_pairs(KEYWORDS, "help me with the {kw} please", seed=1)
    report = evaluate_reranker(Reranker.load(folder, precision="fp32"), validation)
    assert report == {**meta["validation_metrics"], "queries": 8}
    assert set(tiny_reranker.metrics) == {"mrr@10", "accuracy", "loss"}


def test_save_and_load_give_identical_scores(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny_model_dir, epochs=1)
    data = keyword_pairs(KEYWORDS, "about my {kw}")
    task = CrossEncoderTask(load_backbone(tiny_model_dir), data, data.subset(range(8)), config)
    train(task, config, tmp_path / "run", progress=False)
    task.model.save(tmp_path / "m", task.tokenizer, ["relevant"], multi_label=False)
    write_metadata(tmp_path / "m", {"task": "cross-encoder"})
    in_memory = Reranker(task.model, task.tokenizer, precision="fp32")
    loaded = Reranker.load(tmp_path / "m", precision="fp32", batch_size=3)
    expected = in_memory.score_pairs(data.queries, data.passages)
    np.testing.assert_allclose(loaded.score_pairs(data.queries, data.passages), expected, rtol=0, atol=1e-6)
    assert np.all((expected >= 0) & (expected <= 1))
    np.testing.assert_allclose(loaded.score(data.queries[0], data.passages[:4]), expected[:4], atol=1e-6)


def test_concurrent_scoring_gives_the_sequential_scores(tiny_reranker: TrainResult) -> None:
    reranker = Reranker.load(tiny_reranker.output, precision="fp32", batch_size=4)
    queries = [f"question {i} about my {kw}" for i, kw in enumerate(KEYWORDS)]
    passages = [PASSAGE.format(kw=kw) for kw in KEYWORDS]
    expected = [reranker.score(q, passages) for q in queries]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = reranker.score(queries[i], passages)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(queries))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for i, scores in enumerate(expected):
        np.testing.assert_allclose(results[i], scores, atol=1e-6)


def test_reranker_refuses_other_folders_and_bad_calls(
    tiny_reranker: TrainResult, tiny_model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match=r"expected a cross-encoder model folder .* found task None"):
        Reranker.load(tiny_model_dir)
    write_metadata(tmp_path, {"task": "classification"})
    with pytest.raises(InvalidInput, match="found task 'classification'"):
        Reranker.load(tmp_path)
    with pytest.raises(InvalidInput, match=r"cross-encoder .*load it with Reranker"):
        load_predictor(tiny_reranker.output)
    reranker = Reranker.load(tiny_reranker.output)
    assert reranker.score("q", []).shape == (0,)
    with pytest.raises(InvalidInput, match="a list of passages; found a single string"):
        reranker.score("q", "one passage")
    with pytest.raises(InvalidInput, match="as many queries as passages; found 2 and 1"):
        reranker.score_pairs(["a", "b"], ["c"])


def test_training_refuses_the_wrong_task_and_one_sided_labels(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = keyword_pairs(KEYWORDS, "about my {kw}")
    with pytest.raises(InvalidInput, match="expected task cross-encoder; found 'classification'"):
        train_reranker(data, tiny_config(tiny_model_dir).replace(task="classification"), tmp_path / "m")
    relevant_only = data.subset([i for i, y in enumerate(data.labels) if y == 1.0])
    with pytest.raises(InvalidInput, match=r"both relevant .* found 8 relevant of 8"):
        train_reranker(relevant_only, tiny_config(tiny_model_dir), tmp_path / "m")
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text("q,p,rel\na,b,1\n", "utf-8")
    with pytest.raises(InvalidInput, match="expected a passage column"):
        train_from_files(tiny_config(tiny_model_dir), csv_file, "q", "rel", tmp_path / "m")


# command line


def test_command_line_trains_and_evaluates_a_reranker(tiny_model_dir: Path, tmp_path: Path) -> None:
    pairs = keyword_pairs(KEYWORDS, "I have a question about my {kw}")
    data = tmp_path / "pairs.jsonl"
    rows = zip(pairs.queries, pairs.passages, pairs.labels, strict=True)
    data.write_text("".join(json.dumps({"query": q, "passage": p, "label": y}) + "\n" for q, p, y in rows))
    output = tmp_path / "reranker"
    common = ("--data", data, "--text-column", "query", "--label-column", "label")
    trained = ok(
        invoke_cli(
            "train",
            "--task",
            "cross-encoder",
            *common,
            "--passage-column",
            "passage",
            "--base-model",
            tiny_model_dir,
            "--epochs",
            1,
            "--batch-size",
            8,
            "--output",
            output,
        )
    )
    summary = json.loads(trained.stdout.strip().splitlines()[-1])
    assert set(summary["validation"]) == {"mrr@10", "accuracy", "n"}
    assert json.loads((output / "metadata.json").read_text())["data"]["passage_column"] == "passage"
    evaluated = ok(invoke_cli("evaluate", "--model", output, *common, "--passage-column", "passage"))
    report = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert report["n"] == 32
    assert report["queries"] == 8
    assert 0.0 <= report["mrr@10"] <= 1.0
    missing = invoke_cli("train", "--task", "cross-encoder", *common, "--output", tmp_path / "other")
    assert missing.returncode == 2
    assert "expected --passage-column" in missing.stderr
    assert not (tmp_path / "other").exists()
    refused = invoke_cli("predict", "--model", output, stdin="lost card\n")
    assert refused.returncode == 2
    assert "cross-encoder" in refused.stderr
