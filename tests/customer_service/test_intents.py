"""Intent models: training with out-of-scope rows, the stored threshold, the rejection rule and evaluation."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner, Result

from customer_service.cli import app as cli_app
from customer_service.intents import (
    INTENTS_FILE,
    IntentModel,
    IntentTraining,
    choose_threshold,
    evaluate_intents,
    train_intents,
)
from textcore import InvalidInput, LabelledTexts, TrainConfig, load_predictor
from textcore.artifacts import HEAD_FILE
from textcore.frozen_view import has_frozen_view

PHRASES = {
    "block_card": ["block my card", "freeze the card", "card was stolen block it", "lost card freeze"],
    "opening_hours": ["opening hours", "when are you open", "branch hours today", "what time do you open"],
    "refund": ["refund my order", "money back please", "return for a refund", "refund status"],
    "oos": ["weather tomorrow", "tell me a joke", "who won the football", "recipe for pancakes"],
}
FILLERS = ["", "please", "hello", "thanks", "can you help"]


def intent_data(per_label: int, seed: int) -> LabelledTexts:
    rng = random.Random(seed)
    texts, labels = [], []
    for label, phrases in PHRASES.items():
        for _ in range(per_label):
            texts.append(f"{rng.choice(FILLERS)} {rng.choice(phrases)} {rng.choice(FILLERS)}".strip())
            labels.append(label)
    return LabelledTexts(texts, labels)


def tiny_config(model: Path) -> TrainConfig:
    return TrainConfig(
        base_model=str(model),
        epochs=6,
        batch_size=8,
        learning_rate=2e-3,
        head_learning_rate=1e-2,
        evals_per_epoch=1,
        patience=10,
        validation_fraction=0.25,
        device="cpu",
        precision="fp32",
        seed=7,
    )


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> IntentTraining:
    output = tmp_path_factory.mktemp("intents") / "model"
    return train_intents(intent_data(12, seed=1), output, tiny_config(tiny_model_dir), progress=False)


def test_training_stores_the_threshold_and_its_validation_figures(trained: IntentTraining) -> None:
    stored = json.loads((trained.output / INTENTS_FILE).read_text(encoding="utf-8"))
    assert stored["oos_label"] == "oos"
    assert stored["threshold"] == trained.threshold
    assert 0.0 <= trained.threshold < 1.0
    assert stored["selection"] == trained.selection == "bounded"  # the carved validation split has oos rows
    at_t, at_zero = stored["validation"]["at_threshold"], stored["validation"]["at_zero"]
    for figures in (at_t, at_zero):
        assert set(figures) == {
            "accuracy",
            "macro_f1",
            "in_scope_accuracy",
            "oos_recall",
            "oos_precision",
            "n",
        }
        assert all(0.0 <= figures[k] <= 1.0 for k in figures if k != "n")
        assert figures["n"] == 12  # a quarter of each class's 12 rows
    # in-scope accuracy only falls as the threshold rises: the chosen one costs at most a point of it
    assert at_t["in_scope_accuracy"] >= at_zero["in_scope_accuracy"] - 0.01 - 1e-9
    assert at_t["oos_recall"] >= at_zero["oos_recall"]
    assert trained.result.metadata["labels"] == ["block_card", "oos", "opening_hours", "refund"]


def test_predictions_follow_the_rejection_rule(trained: IntentTraining) -> None:
    model = IntentModel.load(trained.output, device="cpu", precision="fp32")
    assert (model.oos_label, model.threshold) == ("oos", trained.threshold)
    assert model.intents == ["block_card", "opening_hours", "refund"]
    texts = intent_data(5, seed=3).texts
    probabilities = model.predictor.predict_proba(texts)
    confidences = [r.confidence for r in model.predict(texts)]
    strict = IntentModel(model.predictor, threshold=float(np.median(confidences)))
    for result, row in zip(strict.predict(texts), probabilities, strict=True):
        top = model.predictor.labels[int(row.argmax())]
        assert result.out_of_scope == (top == "oos" or result.confidence < strict.threshold)
        assert (result.name is None) == result.out_of_scope
        assert result.name is None or result.name == result.alternatives[0][0]
        assert 1 <= len(result.alternatives) <= 3
        assert all(name != "oos" for name, _ in result.alternatives)
        scores = [p for _, p in result.alternatives]
        assert scores == sorted(scores, reverse=True)
        assert result.confidence == pytest.approx(scores[0])
    assert any(r.out_of_scope for r in strict.predict(texts))


def test_evaluation_figures(trained: IntentTraining) -> None:
    model = IntentModel.load(trained.output, device="cpu", precision="fp32")
    figures = evaluate_intents(model, intent_data(6, seed=5))
    assert figures["n"] == 24 and type(figures["n"]) is int
    for key in ("accuracy", "macro_f1", "in_scope_accuracy", "oos_recall", "oos_precision"):
        assert 0.0 <= figures[key] <= 1.0
    assert figures["accuracy"] > 0.25  # better than always one class on a keyword task
    with pytest.raises(InvalidInput, match=r"intents \['mortgage'\] are not known to the model"):
        evaluate_intents(model, LabelledTexts(["a mortgage please"], ["mortgage"]))


def test_unknown_intents_are_named_by_their_first_ten_and_a_count(trained: IntentTraining) -> None:
    # Every unknown intent was listed: --label-column naming another column made each of a file's texts one.
    model = IntentModel.load(trained.output, device="cpu", precision="fp32")
    texts = [f"message {i:02d}" for i in range(30)]
    with pytest.raises(InvalidInput) as refused:
        evaluate_intents(model, LabelledTexts(texts, texts))
    message = str(refused.value)
    assert f"intents {texts[:10]!r} and 20 more (30 in all) are not known to the model" in message
    assert "message 10" not in message


def test_a_folder_without_intents_json_works_with_threshold_zero(
    trained: IntentTraining, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(trained.output, plain)
    (plain / INTENTS_FILE).unlink()
    model = IntentModel.load(plain, device="cpu", precision="fp32")
    assert (model.oos_label, model.threshold) == ("oos", 0.0)
    texts = intent_data(3, seed=9).texts
    for result, row in zip(model.predict(texts), model.predictor.predict_proba(texts), strict=True):
        assert result.out_of_scope == (model.predictor.labels[int(row.argmax())] == "oos")


def test_bad_intent_settings_are_refused(trained: IntentTraining, tmp_path: Path) -> None:
    predictor = load_predictor(trained.output, device="cpu", precision="fp32")
    with pytest.raises(InvalidInput, match=r"threshold in \[0, 1\]; found 1.5"):
        IntentModel(predictor, threshold=1.5)
    broken = tmp_path / "broken"
    shutil.copytree(trained.output, broken)
    (broken / INTENTS_FILE).write_text('{"threshold": "high"}', encoding="utf-8")
    with pytest.raises(InvalidInput, match="expected a string oos_label and a numeric threshold"):
        IntentModel.load(broken, device="cpu")


def test_training_refuses_data_without_in_scope_intents(tiny_model_dir: Path, tmp_path: Path) -> None:
    only_oos = LabelledTexts(["weather", "a joke"], ["oos", "oos"])
    with pytest.raises(InvalidInput, match="expected in-scope intents besides 'oos'"):
        train_intents(only_oos, tmp_path / "m", tiny_config(tiny_model_dir), progress=False)


def test_oos_validation_rows_calibrate_a_model_without_an_oos_class(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = intent_data(6, seed=11)
    in_scope = data.subset([i for i, label in enumerate(data.labels) if label != "oos"])
    validation = intent_data(2, seed=12)  # holds oos rows the classifier never saw as a class
    config = tiny_config(tiny_model_dir).replace(epochs=2)
    trained = train_intents(in_scope, tmp_path / "m", config, validation=validation, progress=False)
    assert trained.result.metadata["labels"] == ["block_card", "opening_hours", "refund"]
    assert trained.selection == "bounded"
    assert trained.validation["at_threshold"]["n"] == 8
    assert trained.validation["at_zero"]["oos_recall"] == 0.0  # without a threshold nothing is rejected


def test_threshold_balances_in_scope_accuracy_and_oos_recall() -> None:
    labels = ["a", "b", "oos"]
    confident = [[0.9, 0.05, 0.05]] * 6  # in scope, right
    unsure_oos = [[0.5, 0.3, 0.2]] * 4  # out of scope, but "a" on top: only a threshold rejects them
    probabilities = np.array(confident + unsure_oos)
    truth = ["a"] * 6 + ["oos"] * 4
    threshold, selection = choose_threshold(probabilities, labels, truth, rule="balanced")
    assert selection == "balanced"
    assert 0.5 < threshold <= 0.9  # every threshold in between is perfect; the plateau's middle is chosen
    assert threshold == pytest.approx(0.7, abs=0.011)


def test_threshold_without_oos_rows_is_none_unless_a_rejection_share_is_asked_for() -> None:
    best = np.linspace(0.35, 0.99, 100)  # the top class's probability; the other two share the rest
    probabilities = np.stack([best, (1 - best) / 2, (1 - best) / 2], axis=1)
    labels, truth = ["a", "b", "c"], ["a"] * 100
    # nothing to weigh a rejection against: every rejected in-scope row would only be an error
    assert choose_threshold(probabilities, labels, truth) == (0.0, "none")
    threshold, selection = choose_threshold(probabilities, labels, truth, in_scope_rejection=0.02)
    assert selection == "in-scope-rejection"
    assert 0.0 < np.mean(best < threshold) <= 0.02
    assert threshold > 0.35
    with pytest.raises(InvalidInput, match="in_scope_rejection"):
        choose_threshold(probabilities, labels, truth, in_scope_rejection=1.0)


def test_bounded_threshold_buys_oos_recall_with_at_most_the_allowed_in_scope_accuracy() -> None:
    labels = ["a", "b", "oos"]
    rows = [[0.95, 0.03, 0.02]] * 90 + [[0.55, 0.4, 0.05]] * 5  # in scope: confident, and 5 unsure but right
    rows += [[0.6, 0.3, 0.1]] * 3 + [[0.45, 0.35, 0.2]] * 2  # out of scope, "a" on top
    probabilities, truth = np.array(rows), ["a"] * 95 + ["oos"] * 5
    # rejecting below 0.56 costs no in-scope row and catches 2 of 5; below 0.61 catches all but costs 5 of 95
    assert choose_threshold(probabilities, labels, truth) == (0.46, "bounded")
    assert choose_threshold(probabilities, labels, truth, max_in_scope_drop=0.06) == (0.61, "bounded")
    assert choose_threshold(probabilities, labels, truth, rule="balanced")[0] > 0.6
    with pytest.raises(InvalidInput):
        choose_threshold(probabilities, labels, truth, rule="median")


def invoke(*args: object) -> Result:
    return CliRunner().invoke(cli_app, [str(a) for a in args])


def test_train_intents_command_distils_from_a_teacher(
    trained: IntentTraining, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """`customer-service train-intents --teacher DIR` trains a student on the teacher's soft labels too; a
    teacher of other intents is refused with one clear line and no model folder."""
    data = intent_data(8, seed=4)
    rows = [f"{text},{label}" for text, label in zip(data.texts, data.labels, strict=True)]
    everything, fewer = tmp_path / "intents.csv", tmp_path / "fewer.csv"
    everything.write_text("\n".join(["text,intent", *rows]), encoding="utf-8")
    fewer.write_text("\n".join(["text,intent", *(r for r in rows if not r.endswith(",refund"))]))
    common = ["--base-model", tiny_model_dir, "--epochs", "1", "--precision", "fp32", "--device", "cpu"]
    student = tmp_path / "student"
    result = invoke("train-intents", "--data", everything, "--output", student, *common,
                    "--teacher", trained.output, "--distill-weight", "0.6")  # fmt: skip
    assert result.exit_code == 0, result.output
    recorded = json.loads((student / "metadata.json").read_text(encoding="utf-8"))
    assert recorded["hyperparameters"]["teachers"] == [str(trained.output)]
    assert recorded["hyperparameters"]["distill_weight"] == 0.6
    assert (student / INTENTS_FILE).is_file()
    refused = invoke("train-intents", "--data", fewer, "--output", tmp_path / "refused", *common,
                     "--teacher", trained.output)  # fmt: skip
    assert refused.exit_code == 2
    assert "expected the labels ['block_card', 'oos', 'opening_hours']" in refused.output
    assert not (tmp_path / "refused" / "metadata.json").exists()


def test_train_intents_command_blends_a_frozen_view_unless_told_not_to(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The intent recipe fits a frozen view and records its weight; `--no-blend-frozen` leaves it off;
    `--refit --blend-frozen` is refused with one line."""
    data = intent_data(8, seed=5)
    rows = [f"{text},{label}" for text, label in zip(data.texts, data.labels, strict=True)]
    (tmp_path / "intents.csv").write_text("\n".join(["text,intent", *rows]), encoding="utf-8")
    common = ["--data", tmp_path / "intents.csv", "--base-model", tiny_model_dir, "--epochs", "1",
              "--precision", "fp32", "--device", "cpu"]  # fmt: skip
    result = invoke("train-intents", *common, "--output", tmp_path / "blended")
    assert result.exit_code == 0, result.output
    blended = json.loads((tmp_path / "blended" / "metadata.json").read_text(encoding="utf-8"))
    assert blended["hyperparameters"]["blend_frozen"] is True
    assert has_frozen_view(tmp_path / "blended") == (blended["frozen_view"]["blend_weight"] > 0)
    assert json.loads(result.stdout.strip().splitlines()[-1])["output"] == str(tmp_path / "blended")
    without = invoke("train-intents", *common, "--no-blend-frozen", "--output", tmp_path / "plain")
    assert without.exit_code == 0, without.output
    plain = json.loads((tmp_path / "plain" / "metadata.json").read_text(encoding="utf-8"))
    assert plain["hyperparameters"]["blend_frozen"] is False and "frozen_view" not in plain
    assert not has_frozen_view(tmp_path / "plain")

    # --refit without the flag leaves the view off (see the refit test); asked for, it is refused
    refused = invoke("train-intents", *common, "--refit", "--blend-frozen", "--output", tmp_path / "refit")
    assert refused.exit_code == 2 and "blend_frozen: expected false with refit" in refused.output


def test_train_intents_command_trains_a_cosine_head_that_evaluates(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = intent_data(8, seed=5)
    rows = [f"{text},{label}" for text, label in zip(data.texts, data.labels, strict=True)]
    (tmp_path / "intents.csv").write_text("\n".join(["text,intent", *rows]), encoding="utf-8")
    common = ["--base-model", tiny_model_dir, "--precision", "fp32", "--device", "cpu"]
    result = invoke("train-intents", "--data", tmp_path / "intents.csv", "--epochs", "1", "--head", "cosine",
                    "--scale", "16", "--output", tmp_path / "cos", *common)  # fmt: skip
    assert result.exit_code == 0, result.output
    recorded = json.loads((tmp_path / "cos" / "metadata.json").read_text(encoding="utf-8"))
    assert (recorded["hyperparameters"]["head"], recorded["hyperparameters"]["scale"]) == ("cosine", 16.0)
    assert float(load_file(str(tmp_path / "cos" / HEAD_FILE))["scale"]) == 16.0
    evaluated = invoke("evaluate-intents", "--model", tmp_path / "cos", "--data", tmp_path / "intents.csv",
                       "--device", "cpu", "--precision", "fp32")  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    printed = json.loads(evaluated.output.strip().splitlines()[-1])
    assert printed["n"] == len(rows) and type(printed["n"]) is int  # a count, never 24.0


def test_calibrate_and_evaluate_commands_on_in_scope_rows(trained: IntentTraining, tmp_path: Path) -> None:
    """Without oos rows `calibrate-intents` sets no threshold, so `evaluate-intents` counts the classifier's
    own accuracy; `--in-scope-rejection` asks for a threshold, whose rejections then count as errors."""
    data = intent_data(6, seed=7)
    rows = [(t, label) for t, label in zip(data.texts, data.labels, strict=True) if label != "oos"]
    path = tmp_path / "in_scope.csv"
    path.write_text("\n".join(["text,intent", *(f"{t},{label}" for t, label in rows)]), encoding="utf-8")
    model = tmp_path / "model"
    shutil.copytree(trained.output, model)

    def last_json(*args: object) -> dict[str, Any]:
        result = invoke(*args, "--device", "cpu", "--precision", "fp32")
        assert result.exit_code == 0, result.output
        parsed: dict[str, Any] = json.loads(result.output.strip().splitlines()[-1])
        return parsed

    plain = last_json("calibrate-intents", "--model", model, "--validation", path)
    assert (plain["threshold"], plain["selection"]) == (0.0, "none")
    assert plain["validation"]["at_threshold"] == plain["validation"]["at_zero"]
    unthresholded = last_json("evaluate-intents", "--model", model, "--data", path)
    assert unthresholded["threshold"] == 0.0
    assert unthresholded["accuracy"] == pytest.approx(plain["validation"]["at_zero"]["accuracy"])

    strict = last_json(
        "calibrate-intents", "--model", model, "--validation", path, "--in-scope-rejection", "0.25"
    )
    assert strict["selection"] == "in-scope-rejection" and strict["threshold"] > 0.0
    assert json.loads((model / INTENTS_FILE).read_text(encoding="utf-8"))["threshold"] == strict["threshold"]
    evaluated = last_json("evaluate-intents", "--model", model, "--data", path)
    assert evaluated["threshold"] == strict["threshold"]
    assert evaluated["accuracy"] == pytest.approx(strict["validation"]["at_threshold"]["accuracy"])
    assert evaluated["accuracy"] <= unthresholded["accuracy"]
    refused = invoke(
        "calibrate-intents", "--model", model, "--validation", path, "--in-scope-rejection", "1.5"
    )
    assert refused.exit_code == 2 and "in_scope_rejection" in refused.output


def test_calibrate_refuses_validation_intents_the_model_does_not_know(
    trained: IntentTraining, tmp_path: Path
) -> None:
    """`calibrate-intents` chose a threshold on rows of intents the model never learnt (a newer file, another
    bank's intents), counting each as an error, and saved it over the model's own; `evaluate-intents` refused
    the same file. Now both refuse it in one line, and the model's threshold file is left as it was."""
    model = tmp_path / "model"
    shutil.copytree(trained.output, model)
    before = (model / INTENTS_FILE).read_bytes()
    data = intent_data(6, seed=7)
    rows = [*zip(data.texts, data.labels, strict=True), ("can I get a mortgage", "mortgage")]
    path = tmp_path / "newer.csv"
    path.write_text("\n".join(["text,intent", *(f"{t},{label}" for t, label in rows)]), encoding="utf-8")
    for command, option in (("calibrate-intents", "--validation"), ("evaluate-intents", "--data")):
        result = invoke(command, "--model", model, option, path, "--device", "cpu", "--precision", "fp32")
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: intents ['mortgage'] are not known"), lines
    assert (model / INTENTS_FILE).read_bytes() == before


@pytest.mark.parametrize("command", ["train-intents", "calibrate-intents", "evaluate-intents"])
def test_intent_commands_refuse_a_label_column_that_is_the_text_column(
    command: str, trained: IntentTraining, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Every message was its own intent: training ran on (one class per text), scoring found all unknown.
    path = tmp_path / "intents.csv"
    data = intent_data(4, seed=3)
    path.write_text(
        "\n".join(["text,intent", *(f"{t},{x}" for t, x in zip(data.texts, data.labels, strict=True))])
    )
    source = {
        "train-intents": [
            "--data",
            path,
            "--output",
            tmp_path / "out",
            "--epochs",
            "1",
            "--base-model",
            tiny_model_dir,
        ],
        "calibrate-intents": ["--model", trained.output, "--validation", path],
        "evaluate-intents": ["--model", trained.output, "--data", path],
    }[command]
    result = invoke(command, *source, "--label-column", "text")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert (
        "--label-column 'text' is also the --text-column: the labels would be the texts themselves"
        in lines[0]
    )
    assert not (tmp_path / "out").exists()


def test_train_intents_refit_keeps_the_first_runs_figures_and_is_refused_with_oos_validation(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """`--refit` trains again on every row once the validation rows have chosen when to stop: no threshold
    is left to choose, and the stored figures are the first run's. Out-of-scope validation rows, which would
    choose a threshold on rows the refit trains on, are refused with one line and no model folder."""
    data = intent_data(8, seed=5)
    rows = [(t, label) for t, label in zip(data.texts, data.labels, strict=True) if label != "oos"]
    path = tmp_path / "in_scope.csv"
    path.write_text("\n".join(["text,intent", *(f"{t},{label}" for t, label in rows)]), encoding="utf-8")
    common = ["--base-model", tiny_model_dir, "--epochs", "2", "--precision", "fp32", "--device", "cpu"]
    result = invoke("train-intents", "--data", path, "--output", tmp_path / "refit", *common, "--refit")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output.strip().splitlines()[-1])
    stored = json.loads((tmp_path / "refit" / INTENTS_FILE).read_text(encoding="utf-8"))
    metadata = json.loads((tmp_path / "refit" / "metadata.json").read_text(encoding="utf-8"))
    assert (printed["threshold"], printed["selection"], stored["refit"]) == (0.0, "none", True)
    assert metadata["refit"]["train_rows"] == len(rows)
    assert metadata["hyperparameters"]["blend_frozen"] is False  # the recipe's frozen view cannot follow
    first_run = metadata["validation_metrics"]
    assert stored["validation"]["at_zero"]["accuracy"] == first_run["accuracy"]
    assert printed["validation"]["at_threshold"]["n"] == first_run["n"]

    everything = tmp_path / "with_oos.csv"
    everything.write_text(
        "\n".join(["text,intent", *(f"{t},{y}" for t, y in zip(data.texts, data.labels, strict=True))]),
        encoding="utf-8",
    )
    refused = invoke(
        "train-intents", "--data", everything, "--output", tmp_path / "refused", *common, "--refit"
    )
    assert refused.exit_code == 2
    assert "refit: the out-of-scope threshold is chosen on the validation rows" in refused.output
    assert not (tmp_path / "refused").exists()


def training_source(command: str, tmp_path: Path) -> list[object]:
    """The data options of a training command: a small intents file for train-intents, a small FAQ for the
    retriever and the re-ranker (written into `tmp_path`)."""
    if command == "train-intents":
        data = intent_data(4, seed=6)
        rows = [f"{text},{label}" for text, label in zip(data.texts, data.labels, strict=True)]
        (tmp_path / "intents.csv").write_text("\n".join(["text,intent", *rows]), encoding="utf-8")
        return ["--data", tmp_path / "intents.csv"]
    faqs = [f"how do I reset my {thing},open settings and choose {thing}" for thing in ("pin", "card", "app")]
    (tmp_path / "faq.csv").write_text("\n".join(["question,answer", *faqs * 2]), encoding="utf-8")
    return ["--kb", tmp_path / "faq.csv"]


@pytest.mark.parametrize("command", ["train-intents", "train-retriever", "train-reranker"])
@pytest.mark.parametrize("taken", ["a-file", "a-folder-with-files"])
def test_training_commands_refuse_an_output_that_is_taken(
    command: str, taken: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """An --output that is a file ended in a traceback; a folder holding files no training run wrote was
    written into, beside what it held. Both are refused in one line, before any training, and the path is left
    as it was."""
    source = training_source(command, tmp_path)
    output = tmp_path / "out"
    if taken == "a-file":
        output.write_text("not a folder", encoding="utf-8")
        expected = f"--output {output}: expected a folder to write the model to; found a file"
    else:
        output.mkdir()
        (output / "notes.txt").write_text("keep me", encoding="utf-8")
        expected = f"--output {output}: expected a new or empty folder, or an earlier model's; it holds notes"
    result = invoke(command, *source, "--output", output, "--base-model", tiny_model_dir, "--epochs", "1",
                    "--device", "cpu")  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    if taken == "a-file":
        assert output.read_text(encoding="utf-8") == "not a folder"
    else:
        assert [p.name for p in output.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("command", ["train-intents", "train-retriever", "train-reranker"])
def test_a_failed_training_run_leaves_the_earlier_model_in_its_output(
    command: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The earlier model in --output was emptied out before the run, which then failed (a base model that is
    not there, a setting out of range) and left an empty folder: the bot's intent model, retriever or
    re-ranker was gone. It is now set aside until the run succeeds and put back when it fails; a base model
    that is not there is refused before anything is moved."""
    source = training_source(command, tmp_path)
    output = shutil.copytree(tiny_model_dir, tmp_path / "earlier")
    (output / "metadata.json").write_text('{"task": "classification"}', encoding="utf-8")
    before = {p.name: p.read_bytes() for p in output.iterdir() if p.is_file()}
    result = invoke(command, *source, "--output", output, "--base-model", tmp_path / "no-such-model",
                    "--epochs", "1", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot find model"), result.stderr
    assert {p.name: p.read_bytes() for p in output.iterdir() if p.is_file()} == before
    result = invoke(command, *source, "--output", output, "--base-model", tiny_model_dir,
                    "--learning-rate", "5", "--epochs", "1", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "learning_rate: expected a number in (0, 1)" in result.stderr, result.stderr
    assert f"the earlier model is back in {output}" in result.stderr, result.stderr
    assert {p.name: p.read_bytes() for p in output.iterdir() if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".earlier")] == []
