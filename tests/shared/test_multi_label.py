"""Multi-label data through `textcore train` and `evaluate`: how a row writes its labels."""

from __future__ import annotations

import json
from pathlib import Path

from tests.shared.test_cli import assert_clean_failure, invoke_cli, ok, write_labelled_csv
from tests.shared.test_training import keyword_data
from textcore.data import LabelledTexts


def _train(data: Path, validation: Path, base: Path, out: Path) -> None:
    ok(invoke_cli("train", "--data", data, "--validation", validation, "--multi-label", "--base-model", base,
                  "--epochs", 1, "--batch-size", 8, "--output", out))  # fmt: skip


def test_a_trailing_or_doubled_bar_names_no_label(tiny_model_dir: Path, tmp_path: Path) -> None:
    # "finance|" (a join that ended on an empty string) was read as the labels "finance" and "": the model
    # learnt a label with no name, and evaluation called "" a label it did not know.
    data = keyword_data(24)
    marked = [f"{y}|finance|" if i % 2 else f"{y}||finance" for i, y in enumerate(data.labels)]
    train = write_labelled_csv(tmp_path / "train.csv", LabelledTexts(data.texts, marked))
    validation = write_labelled_csv(tmp_path / "val.csv", LabelledTexts(data.texts[:6], marked[:6]))
    _train(train, validation, tiny_model_dir, tmp_path / "m")
    labels = json.loads((tmp_path / "m" / "labels.json").read_text())
    assert labels == {"labels": ["finance", "negative", "positive"], "multi_label": True}
    report = ok(invoke_cli("evaluate", "--model", tmp_path / "m", "--data", validation))
    assert json.loads(report.stdout.splitlines()[-1])["n"] == 6


def test_a_jsonl_row_may_list_its_labels(tiny_model_dir: Path, tmp_path: Path) -> None:
    # {"label": ["positive", "finance"]} was read as the one label '["positive", "finance"]': every
    # combination of labels became a label of its own, and the model learnt none of them.
    data = keyword_data(24)
    train, validation = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    for path, rows in ((train, range(24)), (validation, range(6))):
        lines = [json.dumps({"text": data.texts[i], "label": [data.labels[i], "finance"]}) for i in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _train(train, validation, tiny_model_dir, tmp_path / "m")
    labels = json.loads((tmp_path / "m" / "labels.json").read_text())
    assert labels == {"labels": ["finance", "negative", "positive"], "multi_label": True}
    report = json.loads(
        ok(invoke_cli("evaluate", "--model", tmp_path / "m", "--data", validation)).stdout.splitlines()[-1]
    )
    assert report["n"] == 6 and report["per_label"]["finance"]["support"] == 6


def test_a_row_whose_labels_name_none_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    # "|" names no label now that empty parts are dropped: the row is refused, as an empty cell is.
    data = keyword_data(24)
    marked = [f"{y}|finance" for y in data.labels]
    validation = write_labelled_csv(tmp_path / "val.csv", LabelledTexts(data.texts[:6], marked[:6]))
    bare = write_labelled_csv(
        tmp_path / "bare.csv", LabelledTexts(data.texts, [*marked[:4], " | ", *marked[5:]])
    )
    failed = invoke_cli("train", "--data", bare, "--validation", validation, "--multi-label", "--base-model",
                        tiny_model_dir, "--epochs", 1, "--output", tmp_path / "m")  # fmt: skip
    assert_clean_failure(
        failed, "training data: row 5 has the labels '|', which name none; expected one or more"
    )
    _train(write_labelled_csv(tmp_path / "train.csv", LabelledTexts(data.texts, marked)), validation,
           tiny_model_dir, tmp_path / "m")  # fmt: skip
    bare_eval = write_labelled_csv(
        tmp_path / "bare_eval.csv", LabelledTexts(data.texts[:2], ["finance", "|"])
    )
    failed = invoke_cli("evaluate", "--model", tmp_path / "m", "--data", bare_eval)
    assert_clean_failure(failed, "evaluation data: row 2 has the labels '|', which name none")


def test_a_row_with_an_empty_cell_has_none_of_the_labels(tiny_model_dir: Path, tmp_path: Path) -> None:
    # A support ticket with no tags, a headline of no topic: the empty cell was refused ("row 3 has an
    # empty 'label'"), so a multi-label data set could not say "none of these applies". In single-label
    # data it still is refused.
    data = keyword_data(24)
    marked = ["" if i % 4 == 2 else f"{y}|finance" for i, y in enumerate(data.labels)]
    train = write_labelled_csv(tmp_path / "train.csv", LabelledTexts(data.texts, marked))
    validation = write_labelled_csv(tmp_path / "val.csv", LabelledTexts(data.texts[:6], marked[:6]))
    _train(train, validation, tiny_model_dir, tmp_path / "m")
    labels = json.loads((tmp_path / "m" / "labels.json").read_text())
    assert labels == {"labels": ["finance", "negative", "positive"], "multi_label": True}
    listed = tmp_path / "val.jsonl"  # in JSON Lines, an empty list: the negative rows name no label here
    rows = [
        {"text": t, "label": [y] if y == "positive" else []}
        for t, y in zip(data.texts[:6], data.labels[:6], strict=True)
    ]
    listed.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    for held_out, finance in ((validation, 5), (listed, 0)):
        report = json.loads(
            ok(invoke_cli("evaluate", "--model", tmp_path / "m", "--data", held_out)).stdout.splitlines()[-1]
        )
        assert report["n"] == 6 and report["per_label"]["finance"]["support"] == finance
    assert report["per_label"]["positive"]["support"] == 3 and report["per_label"]["negative"]["support"] == 0

    single = invoke_cli("train", "--data", train, "--base-model", tiny_model_dir, "--epochs", 1,
                        "--output", tmp_path / "single")  # fmt: skip
    assert_clean_failure(single, f"{train}: row 3 has an empty 'label'; expected text in every row")
