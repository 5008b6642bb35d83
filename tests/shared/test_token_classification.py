"""The tagger: BIO data files, entity scores, training, serving with character offsets, the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.shared.test_cli import invoke_cli, ok
from textcore.artifacts import write_metadata
from textcore.bio import TaggedSentences, read_tagged, split_words, tag_labels, to_iob2
from textcore.errors import InvalidInput
from textcore.evaluation import load_predictor
from textcore.metrics import entity_spans, tagging_report
from textcore.models import load_backbone
from textcore.tagger import Entity, Tagger, evaluate_tagger
from textcore.training import TrainConfig, TrainResult, train_from_files, train_tagger
from textcore.training.loop import train
from textcore.training.token_classification import TokenClassificationTask

COMPANIES = ["Acme Corp", "Globex", "Initech", "Umbrella Group", "Hooli", "Vandelay Industries"]
PRODUCTS = ["Widget Pro", "Fizz", "Skyline"]
TEMPLATES = [
    "{org} shares rose after the {product} launch .",
    "analysts cut their target for {org} on weak {product} sales .",
    "investors sold {org} as demand for {product} slowed .",
    "on Monday {org} said the {product} will ship in May .",
]
# new sentences: the training words in other orders and combinations
HELD_OUT = [
    "investors sold {org} after the {product} launch .",
    "analysts said {org} will ship the {product} in May .",
]


def tagged(templates: list[str]) -> TaggedSentences:
    """Every template filled with every company and one product: ORG and PRODUCT entities, IOB2."""
    tokens, tags = [], []
    for t, template in enumerate(templates):
        for c, org in enumerate(COMPANIES):
            product = PRODUCTS[(t + c) % len(PRODUCTS)]
            words, labels = [], []
            for word in template.split():
                name, kind = {"{org}": (org, "ORG"), "{product}": (product, "PRODUCT")}.get(word, (word, ""))
                parts = name.split()
                words += parts
                labels += [f"{p}-{kind}" for p in ["B"] + ["I"] * (len(parts) - 1)] if kind else ["O"]
            tokens.append(words)
            tags.append(labels)
    return TaggedSentences(tokens, tags)


def tiny_config(model: Path, **changes: object) -> TrainConfig:
    base = TrainConfig(
        task="token-classification",
        base_model=str(model),
        epochs=8,
        batch_size=8,
        learning_rate=5e-3,
        head_learning_rate=2e-2,
        max_length=32,
        evals_per_epoch=1,
        patience=12,
        freeze_embeddings=False,
        precision="fp32",
        seed=3,
    )
    return base.replace(**changes)


@pytest.fixture(scope="module")
def tiny_tagger(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    output = tmp_path_factory.mktemp("tagger") / "model"
    return train_tagger(
        tagged(TEMPLATES), tiny_config(tiny_model_dir), output, validation=tagged(HELD_OUT), progress=False
    )


def write_conll(path: Path, data: TaggedSentences) -> Path:
    """One `word TAG` line per word, a blank line between sentences."""
    sentences = zip(data.tokens, data.tags, strict=True)
    path.write_text(
        "\n\n".join("\n".join(map(" ".join, zip(*pair, strict=True))) for pair in sentences), "utf-8"
    )
    return path


def write_jsonl(path: Path, data: TaggedSentences) -> Path:
    """One {"tokens": [...], "tags": [...]} object per sentence."""
    rows = zip(data.tokens, data.tags, strict=True)
    path.write_text("".join(json.dumps({"tokens": w, "tags": t}) + "\n" for w, t in rows), "utf-8")
    return path


# tags, spans and scores


def test_entity_spans_read_iob2_and_iob1_like_conlleval() -> None:
    assert entity_spans(["B-ORG", "I-ORG", "O", "B-PRODUCT"]) == [("ORG", 0, 2), ("PRODUCT", 3, 4)]
    assert entity_spans(["B-ORG", "B-ORG", "I-ORG"]) == [("ORG", 0, 1), ("ORG", 1, 3)]
    # IOB1: an I- tag that does not continue an entity of its type opens one
    assert entity_spans(["I-ORG", "I-ORG", "I-PRODUCT", "O", "I-ORG"]) == [
        ("ORG", 0, 2),
        ("PRODUCT", 2, 3),
        ("ORG", 4, 5),
    ]
    assert entity_spans(["O", "O"]) == []
    assert entity_spans([]) == []
    assert to_iob2(["I-ORG", "I-ORG", "O", "I-X", "B-X", "I-X"]) == [
        "B-ORG",
        "I-ORG",
        "O",
        "B-X",
        "B-X",
        "I-X",
    ]
    assert tag_labels(["PRODUCT", "ORG", "ORG"]) == ["O", "B-ORG", "I-ORG", "B-PRODUCT", "I-PRODUCT"]


def test_tagging_report_scores_exact_spans_and_types() -> None:
    truth = [["B-ORG", "I-ORG", "O", "B-PRODUCT"], ["O", "B-ORG"]]
    predicted = [["B-ORG", "O", "O", "B-PRODUCT"], ["O", "B-ORG"]]  # a truncated span is a miss
    report = tagging_report(truth, predicted)
    assert (report.precision, report.recall) == (2 / 3, 2 / 3)
    assert report.f1 == pytest.approx(2 / 3)
    assert report.accuracy == 5 / 6
    assert (report.n, report.entities) == (2, 3)
    assert report.to_dict()["per_type"] == {
        "ORG": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},
        "PRODUCT": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
    }
    assert tagging_report([["O"]], [["B-ORG"]]).to_dict()["per_type"]["ORG"]["support"] == 0
    with pytest.raises(ValueError, match="same shape"):
        tagging_report([["O", "O"]], [["O"]])


def test_split_words_keeps_character_offsets() -> None:
    text = "AT&T and Coca-Cola's  3.5% rise, per S&P 500."
    words = split_words(text)
    assert [w for w, _, _ in words] == [
        "AT&T", "and", "Coca-Cola", "'", "s", "3.5", "%", "rise", ",", "per", "S&P", "500", ".",
    ]  # fmt: skip
    assert all(text[start:end] == word for word, start, end in words)
    assert split_words("  ") == []


# data


def test_tagged_sentences_check_normalise_and_split() -> None:
    data = TaggedSentences([["Acme", "Corp", "fell"], ["ok"]], [["I-ORG", "I-ORG", "O"], ["O"]])
    assert data.tags[0] == ["B-ORG", "I-ORG", "O"]  # IOB1 stored as IOB2
    assert data.entity_counts() == {"ORG": 1}
    assert data.summary() == {"sentences": 2, "tokens": 4, "entities": {"ORG": 1}}
    bigger = tagged(TEMPLATES)
    train_part, validation = bigger.split(0.25, seed=1)
    assert (len(train_part), len(validation)) == (18, 6)
    assert sorted(map(tuple, train_part.tokens + validation.tokens)) == sorted(map(tuple, bigger.tokens))
    assert bigger.split(0.25, seed=1) == (train_part, validation)
    cases: list[tuple[list[list[str]], list[list[str]], str]] = [
        ([["a", "b"]], [["O"]], "sentence 1: expected one tag per token; found 2 tokens and 1 tags"),
        (
            [["a"]],
            [["X-ORG"]],
            r"sentence 1, token 1: expected a tag O, B-TYPE or I-TYPE \(IOB2\); found 'X-ORG'",
        ),
        ([["a"]], [["B-"]], "found 'B-'"),
        ([[]], [[]], "sentence 1: expected at least one token"),
        ([["a"]], [], "as many tag lists as sentences"),
    ]
    for tokens, tags, message in cases:
        with pytest.raises(InvalidInput, match=message):
            TaggedSentences(tokens, tags)
    with pytest.raises(InvalidInput, match="at least 2 sentences"):
        TaggedSentences([["a"]], [["O"]]).split(0.5, seed=0)


def test_read_conll_files(tmp_path: Path) -> None:
    conll = tmp_path / "news.conll"
    conll.write_text(
        "-DOCSTART- -X- O O\n\nAcme NNP B-NP I-ORG\nCorp NNP I-NP I-ORG\nfell VBD B-VP O\n\n\n"
        "Hooli\tB-ORG\nlaunched O\nFizz B-PRODUCT\n",
        "utf-8",
    )
    assert read_tagged(conll) == TaggedSentences(
        [["Acme", "Corp", "fell"], ["Hooli", "launched", "Fizz"]],
        [["B-ORG", "I-ORG", "O"], ["B-ORG", "O", "B-PRODUCT"]],
    )
    data = tagged(TEMPLATES)
    assert read_tagged(write_conll(tmp_path / "all.bio", data)) == data


def test_read_tagged_tables(tmp_path: Path) -> None:
    jsonl = tmp_path / "tagged.jsonl"
    rows = [
        {"tokens": ["Acme", "Corp", "rose"], "tags": ["B-ORG", "I-ORG", "O"]},
        {"tokens": "x", "tags": "O"},
    ]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    expected = TaggedSentences([["Acme", "Corp", "rose"], ["x"]], [["B-ORG", "I-ORG", "O"], ["O"]])
    assert read_tagged(jsonl) == expected
    assert read_tagged(jsonl, "text", "label") == expected  # the other tasks' defaults fall back
    csv_file = tmp_path / "tagged.csv"
    csv_file.write_text(
        'words,bio\nAcme Corp rose,B-ORG I-ORG O\nx,O\n"[""Fizz""]","[""I-PRODUCT""]"\n', "utf-8"
    )
    assert read_tagged(csv_file, "words", "bio").tags == [["B-ORG", "I-ORG", "O"], ["O"], ["B-PRODUCT"]]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "a.csv",
            "tokens,tags\na b,O O\na b c,O O\n",
            r"row 2: expected one tag per token; found 3 tokens and 2",
        ),
        ("a.csv", "tokens,tags\na,X-ORG\n", r"row 1, token 1: expected a tag O, B-TYPE or I-TYPE .*'X-ORG'"),
        ("a.csv", "tokens,tags\n ,\n", r"row 1 has no tokens in 'tokens'"),
        ("a.csv", "words,tags\na,O\n", "expected a column tokens; found words, tags"),
        ("a.csv", "tokens,tags\n", "expected at least one data row"),
        (
            "a.jsonl",
            '{"tokens": ["a", 1], "tags": ["O", "O"]}\n',
            r"row 1, column 'tokens': expected a JSON list",
        ),
        (
            "a.jsonl",
            '{"tokens": "[a", "tags": "O"}\n',
            r"row 1, column 'tokens': expected a JSON list of str",
        ),
        ("a.conll", "Acme B-ORG\nCorp\n", r"a.conll:2: expected a token and its tag; found 'Corp'"),
        (
            "a.conll",
            "a O\n\nb O\nc b-org\n",
            r"sentence 2 \(line 3\), token 2: expected a tag .* found 'b-org'",
        ),
        ("a.conll", "\n\n", "expected at least one sentence"),
        ("a.bio", b"\xff O\n", "expected UTF-8 text"),
    ],
)
def test_read_tagged_explains_bad_files(
    tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, "utf-8")
    with pytest.raises(InvalidInput, match=message):
        read_tagged(path)
    with pytest.raises(InvalidInput, match="does not exist"):
        read_tagged(tmp_path / "missing.conll")


# training and serving


def test_tagger_learns_entities_of_held_out_sentences(tiny_tagger: TrainResult) -> None:
    # The validation sentences are not in the training data; chance entity F1 is near 0.
    assert tiny_tagger.metrics["f1"] >= 0.8, tiny_tagger.metrics
    assert tiny_tagger.metrics["per_type"]["ORG"]["support"] == 12
    meta = tiny_tagger.metadata
    assert meta["task"] == "token-classification"
    assert meta["labels"] == ["O", "B-ORG", "I-ORG", "B-PRODUCT", "I-PRODUCT"]
    words = sum(len(sentence) for sentence in tagged(TEMPLATES).tokens)
    assert meta["data"]["train"] == {"sentences": 24, "tokens": words, "entities": {"ORG": 24, "PRODUCT": 24}}
    assert meta["validation_metrics"]["n"] == 12
    folder = tiny_tagger.output
    for name in (
        "config.json",
        "model.safetensors",
        "head.safetensors",
        "tokenizer.json",
        "training/curves.png",
    ):
        assert (folder / name).is_file(), name
    assert not (folder / "training" / "checkpoint").exists()
    assert json.loads((folder / "labels.json").read_text())["labels"] == meta["labels"]
    report = evaluate_tagger(Tagger.load(folder, precision="fp32"), tagged(HELD_OUT))
    assert {k: report[k] for k in meta["validation_metrics"]} == meta["validation_metrics"]


def test_tag_finds_entities_with_offsets_into_the_text(tiny_tagger: TrainResult) -> None:
    tagger = Tagger.load(tiny_tagger.output, precision="fp32")
    assert tagger.entity_types == ["ORG", "PRODUCT"]
    texts = ["Investors sold Hooli after the Skyline launch.", "", "  Initech shares rose!"]
    entities = tagger.tag(texts)
    assert entities[1] == []
    for text, found in zip(texts, entities, strict=True):
        for entity in found:
            assert text[entity.start : entity.end] == entity.text
            assert 0.0 < entity.score <= 1.0
    assert [(e.text, e.label) for e in entities[0]] == [("Hooli", "ORG"), ("Skyline", "PRODUCT")]
    assert Entity("Hooli", "ORG", 11, 16, 0.9).to_dict() == {
        "text": "Hooli", "label": "ORG", "start": 11, "end": 16, "score": 0.9,
    }  # fmt: skip
    tags = tagger.tag_tokens([["Initech", "shares", "rose"], []])
    assert tags == [["B-ORG", "O", "O"], []]


def test_save_and_load_give_identical_tags(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny_model_dir, epochs=1)
    data = tagged(TEMPLATES)
    labels = tag_labels(data.entity_counts())
    task = TokenClassificationTask(load_backbone(tiny_model_dir), data, data.subset(range(4)), labels, config)
    train(task, config, tmp_path / "run", progress=False)
    task.model.save(tmp_path / "m", task.tokenizer, labels)
    write_metadata(tmp_path / "m", {"task": "token-classification"})
    in_memory = Tagger(task.model, task.tokenizer, labels, precision="fp32")
    loaded = Tagger.load(tmp_path / "m", precision="fp32", batch_size=3)
    expected = in_memory.word_probabilities(data.tokens)
    for got, want, words in zip(loaded.word_probabilities(data.tokens), expected, data.tokens, strict=True):
        assert got.shape == (len(words), len(labels))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert loaded.tag_tokens(data.tokens) == in_memory.tag_tokens(data.tokens)


def test_words_past_max_length_are_tagged_outside(tiny_tagger: TrainResult) -> None:
    tagger = Tagger.load(tiny_tagger.output, precision="fp32", max_length=8)
    words = ["shares"] * 23  # one sub-word each: 6 fit beside [CLS] and [SEP]
    probabilities = tagger.word_probabilities([words])[0]
    assert probabilities.shape == (23, 5)
    np.testing.assert_array_equal(probabilities[6:], np.tile([1.0, 0, 0, 0, 0], (17, 1)))
    assert tagger.tag_tokens([words])[0][6:] == ["O"] * 17


def test_tagger_refuses_other_folders_and_bad_calls(
    tiny_tagger: TrainResult, tiny_model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match=r"expected a tagger model folder .* found task None"):
        Tagger.load(tiny_model_dir)
    write_metadata(tmp_path, {"task": "classification"})
    with pytest.raises(InvalidInput, match="found task 'classification'"):
        Tagger.load(tmp_path)
    with pytest.raises(InvalidInput, match=r"token-classification model \(tagger\).*load it with Tagger"):
        load_predictor(tiny_tagger.output)
    tagger = Tagger.load(tiny_tagger.output)
    with pytest.raises(InvalidInput, match="a list of texts; found a single string"):
        tagger.tag("Hooli rose")
    with pytest.raises(InvalidInput, match="each a list of words; found a string"):
        tagger.tag_tokens(["Hooli rose"])
    unknown = TaggedSentences([["Paris"]], [["B-LOC"]])
    with pytest.raises(InvalidInput, match=r"entity types \['LOC'\] are not known to the model"):
        evaluate_tagger(tagger, unknown)


def test_training_refuses_the_wrong_task_and_data_without_entities(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = tagged(TEMPLATES)
    config = tiny_config(tiny_model_dir)
    with pytest.raises(InvalidInput, match="expected task token-classification; found 'classification'"):
        train_tagger(data, config.replace(task="classification"), tmp_path / "m")
    nothing = TaggedSentences([["a"], ["b"]], [["O"], ["O"]])
    with pytest.raises(InvalidInput, match="training data: expected at least one entity"):
        train_tagger(nothing, config, tmp_path / "m")
    with pytest.raises(InvalidInput, match=r"validation entity types \['LOC'\] do not occur"):
        train_tagger(data, config, tmp_path / "m", validation=TaggedSentences([["Paris"]], [["B-LOC"]]))
    assert TrainConfig(task="token-classification").selection_metric == "f1"
    assert not (tmp_path / "m").exists()


def test_unknown_entity_types_are_named_by_their_first_ten_and_a_count(
    tiny_tagger: TrainResult, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Every unknown type was listed: a tags column of another scheme named hundreds of them in one line.
    types = [f"T{i:02d}" for i in range(25)]
    many = TaggedSentences([[f"w{i}"] for i in range(25)], [[f"B-{t}"] for t in types])
    expected = f"{types[:10]!r} and 15 more (25 in all)"
    with pytest.raises(InvalidInput) as refused:
        evaluate_tagger(Tagger.load(tiny_tagger.output), many)
    assert expected in str(refused.value) and "T10" not in str(refused.value)
    config = tiny_config(tiny_model_dir)
    with pytest.raises(InvalidInput) as refused:
        train_tagger(tagged(TEMPLATES), config, tmp_path / "m", validation=many)
    assert expected in str(refused.value) and "T10" not in str(refused.value)
    assert not (tmp_path / "m").exists()


# command line


def test_command_line_trains_evaluates_and_predicts_a_tagger(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = write_conll(tmp_path / "train.conll", tagged(TEMPLATES))
    held_out = tagged(HELD_OUT)
    validation = write_jsonl(tmp_path / "validation.jsonl", held_out)
    output = tmp_path / "tagger"
    trained = ok(
        invoke_cli(
            "train", "--task", "token-classification", "--data", data, "--validation", validation,
            "--base-model", tiny_model_dir, "--epochs", 2, "--batch-size", 8, "--output", output,
        )
    )  # fmt: skip
    summary = json.loads(trained.stdout.strip().splitlines()[-1])
    assert set(summary["validation"]) == {"precision", "recall", "f1", "accuracy", "n", "entities"}
    assert summary["validation"]["n"] == 12
    evaluated = ok(invoke_cli("evaluate", "--model", output, "--data", validation))
    assert "token accuracy" in evaluated.stdout
    report = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert set(report) == {"precision", "recall", "f1", "accuracy", "n", "entities", "per_type"}
    assert report["n"] == 12
    assert report["entities"] == 24
    predicted = ok(
        invoke_cli("predict", "--model", output, stdin="Hooli shares rose after the Fizz launch.\n")
    )
    row = json.loads(predicted.stdout.strip())
    assert row["text"] == "Hooli shares rose after the Fizz launch."
    for entity in row["entities"]:
        assert set(entity) == {"text", "label", "start", "end", "score"}
        assert row["text"][entity["start"] : entity["end"]] == entity["text"]
    bad = tmp_path / "bad.conll"
    bad.write_text("Acme X-ORG\n", "utf-8")
    refused = invoke_cli(
        "train", "--task", "token-classification", "--data", bad, "--output", tmp_path / "other"
    )
    assert refused.returncode == 2
    assert "expected a tag O, B-TYPE or I-TYPE" in refused.stderr
    assert not (tmp_path / "other").exists()
    onnx = invoke_cli("evaluate", "--model", output, "--data", validation, "--backend", "onnx")
    assert onnx.returncode == 2
    assert "expected backend torch for a tagger" in onnx.stderr


def test_train_from_files_reads_tables_with_the_default_columns(tiny_model_dir: Path, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "tagged.jsonl", tagged(TEMPLATES))
    result = train_from_files(
        tiny_config(tiny_model_dir, epochs=1), path, "text", "label", tmp_path / "m", progress=False
    )
    assert result.metadata["data"]["file"]["sentences"] == 24
    assert result.metadata["data"]["validation"]["sentences"] == 2  # 10% of the sentences
