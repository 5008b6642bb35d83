"""End-to-end tests of the `textcore` console command, run as a real subprocess with a tiny random BERT.

Every run is small (48 rows, 1-2 epochs, batch size 8) so that the module finishes in about a minute on a
two-core machine. Data files are written into temporary folders.

The tests of one option or task elsewhere call the same command in process (`invoke_cli`): the same
arguments, output and exit status, without a new interpreter importing torch for every call. The console
script itself (its entry point, a quiet stderr, one error line and exit code 2) is tested here, in
subprocesses.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import select
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from textcore.artifacts import read_metadata
from textcore.classifier import Classifier
from textcore.cli import full_app
from textcore.console import run_app
from textcore.data import LabelledTexts
from textcore.embeddings import Encoder
from textcore.errors import InvalidInput
from textcore.evaluation import load_predictor

TEXTCORE = Path(sys.executable).parent / "textcore"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LABELS = ["neg", "pos"]

POSITIVE = [
    "great product, I love it",
    "wonderful service and fast delivery",
    "excellent quality, very happy",
    "really good value for money",
    "amazing, would buy again",
    "fantastic experience overall",
    "superb support team",
    "nice and reliable",
]
NEGATIVE = [
    "terrible, it broke at once",
    "awful service, very slow",
    "poor quality, unhappy",
    "really bad value for money",
    "horrible, never again",
    "disappointing experience overall",
    "useless support team",
    "cheap and unreliable",
]


def run_cli(
    *args: object, stdin: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the installed `textcore` script (offline: conftest sets HF_HUB_OFFLINE in this environment)."""
    assert TEXTCORE.is_file(), f"expected the console script at {TEXTCORE}; is textcore installed?"
    return subprocess.run(
        [str(TEXTCORE), *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        check=False,
    )


class Outcome(Protocol):
    """What a finished command left: a `subprocess.CompletedProcess` or an `InProcess`."""

    @property
    def returncode(self) -> int: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...


@dataclass(frozen=True)
class InProcess:
    returncode: int
    stdout: str
    stderr: str


def invoke_cli(*args: object, stdin: str | None = None) -> InProcess:
    """Run the `textcore` command in this process (typer's runner) with `run_cli`'s arguments and results.

    An exception that escaped the command is appended to stderr as its traceback (exit status 1), as the
    console script would print it.
    """
    result = CliRunner().invoke(full_app(), [str(a) for a in args], input=stdin)
    stderr = result.stderr
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return InProcess(result.exit_code, result.stdout, stderr)


R = TypeVar("R", bound=Outcome)


def ok(result: R) -> R:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


def assert_quiet_stderr(stderr: str) -> None:
    """No library progress bars, load reports or tracebacks on a successful run's stderr."""
    for noise in ("Traceback", "Loading weights", "Writing model shards", "LOAD REPORT", "it/s]", "step/s]"):
        assert noise not in stderr, f"unexpected {noise!r} on stderr:\n{stderr}"


def write_csv(
    path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("review", "sentiment")
) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_labelled_csv(path: Path, data: LabelledTexts) -> Path:
    """`data` as a CSV file with the columns `textcore train` reads by default (`text`, `label`)."""
    return write_csv(path, list(zip(data.texts, data.labels, strict=True)), ("text", "label"))


@dataclass(frozen=True)
class Trained:
    model: Path
    data: Path
    eval_data: Path
    stdout: str
    stderr: str


def eval_column(trained: Trained, column: str) -> list[str]:
    with trained.eval_data.open(encoding="utf-8", newline="") as handle:
        return [row[column] for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-data")
    rows = [
        (text, label)
        for _ in range(3)
        for pair in zip(POSITIVE, NEGATIVE, strict=True)
        for text, label in zip(pair, LABELS[::-1], strict=True)
    ]
    write_csv(folder / "train.csv", rows)  # 48 rows, 24 per class
    write_csv(
        folder / "eval.csv",
        [
            ("I love it, great", "pos"),
            ("awful, it broke", "neg"),
            ("very happy with the quality", "pos"),
            ("slow and useless", "neg"),
            ("superb value", "pos"),
            ("never again", "neg"),
            ("wonderful support", "pos"),
            ("poor and cheap", "neg"),
        ],
    )
    return folder


@pytest.fixture(scope="module")
def trained(data_dir: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    output = tmp_path_factory.mktemp("cli-model") / "sentiment"
    result = ok(
        run_cli(
            "train",
            "--task",
            "classification",
            "--data",
            data_dir / "train.csv",
            "--text-column",
            "review",
            "--label-column",
            "sentiment",
            "--base-model",
            tiny_model_dir,
            "--epochs",
            2,
            "--batch-size",
            8,
            "--output",
            output,
        )
    )
    return Trained(output, data_dir / "train.csv", data_dir / "eval.csv", result.stdout, result.stderr)


def test_train_writes_a_complete_model_folder(trained: Trained) -> None:
    for name in (
        "config.json",
        "model.safetensors",
        "head.safetensors",
        "labels.json",
        "metadata.json",
        "tokenizer.json",
        "training/metrics.jsonl",
        "training/curves.png",
        "training/confusion.png",
    ):
        assert (trained.model / name).is_file(), f"{name} is missing from {trained.model}"
    assert not list(trained.model.rglob("*.bin")), "pickle weights must never be written"
    assert not (trained.model / "training" / "checkpoint").exists(), (
        "the resumable checkpoint should be removed"
    )
    for picture in ("curves.png", "confusion.png"):
        data = (trained.model / "training" / picture).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 1000
    assert json.loads((trained.model / "labels.json").read_text()) == {"labels": LABELS, "multi_label": False}
    head = load_file(str(trained.model / "head.safetensors"))
    assert head["weight"].shape == (2, 32)
    assert head["bias"].shape == (2,)


def test_train_prints_the_folder_and_validation_figures_and_keeps_stderr_quiet(trained: Trained) -> None:
    lines = trained.stdout.strip().splitlines()
    assert lines[0] == f"saved {trained.model}"
    summary = json.loads(lines[-1])
    assert summary["output"] == str(trained.model)
    assert set(summary["validation"]) == {"accuracy", "macro_f1", "n"}
    assert 0.0 <= summary["validation"]["accuracy"] <= 1.0
    assert_quiet_stderr(trained.stderr)


def test_train_metadata(trained: Trained, tiny_model_dir: Path) -> None:
    meta = json.loads((trained.model / "metadata.json").read_text())
    assert meta["task"] == "classification"
    assert meta["base_model"] == str(tiny_model_dir)
    assert meta["labels"] == LABELS
    source = meta["data"]["file"]
    assert source["sha256"] == hashlib.sha256(trained.data.read_bytes()).hexdigest()
    assert source["rows"] == 48
    assert source["label_counts"] == {"neg": 24, "pos": 24}
    assert Path(source["path"]) == trained.data.resolve()
    assert meta["data"]["text_column"] == "review"
    assert meta["data"]["label_column"] == "sentiment"
    train_rows, val_rows = meta["data"]["train"]["rows"], meta["data"]["validation"]["rows"]
    assert train_rows + val_rows == 48
    assert meta["data"]["validation"]["label_counts"] == {"neg": val_rows // 2, "pos": val_rows // 2}
    hyper = meta["hyperparameters"]
    assert (hyper["epochs"], hyper["batch_size"], hyper["task"], hyper["seed"]) == (
        2,
        8,
        "classification",
        42,
    )
    metrics = meta["validation_metrics"]
    assert metrics["n"] == val_rows
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert 0.0 <= metrics["macro_f1"] <= 1.0
    for library in ("python", "textcore", "torch", "transformers"):
        assert meta["libraries"][library], library
    created = datetime.fromisoformat(meta["created_at"])
    assert created.tzinfo is not None
    assert meta["training"]["steps"] == 2 * math.ceil(train_rows / 8)


def test_train_metrics_log(trained: Trained) -> None:
    meta = json.loads((trained.model / "metadata.json").read_text())
    records = [
        json.loads(line) for line in (trained.model / "training" / "metrics.jsonl").read_text().splitlines()
    ]
    steps = [r for r in records if "loss" in r]
    evals = [r for r in records if "val_accuracy" in r]
    assert [r["step"] for r in steps] == list(range(1, meta["training"]["steps"] + 1))
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in steps)
    assert evals, "expected validation records"
    assert evals[-1]["step"] == meta["training"]["steps"]
    assert all(0.0 <= r["val_accuracy"] <= 1.0 for r in evals)


def test_evaluate_prints_one_json_report_last(trained: Trained) -> None:
    result = ok(
        run_cli(
            "evaluate",
            "--model",
            trained.model,
            "--data",
            trained.eval_data,
            "--text-column",
            "review",
            "--label-column",
            "sentiment",
        )
    )
    assert_quiet_stderr(result.stderr)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["n"] == 8 and type(report["n"]) is int  # counts are integers in the JSON
    assert set(report["per_label"]) == set(LABELS)
    for scores in report["per_label"].values():
        assert set(scores) >= {"precision", "recall", "f1", "support"}
        assert scores["support"] == 4 and type(scores["support"]) is int
        assert all(0.0 <= scores[k] <= 1.0 for k in ("precision", "recall", "f1"))
    confusion = np.array(report["confusion"])
    assert confusion.shape == (2, 2)
    assert confusion.sum() == 8
    assert confusion.sum(axis=1).tolist() == [4, 4]  # rows are the true labels, in label order
    assert report["accuracy"] == pytest.approx(np.trace(confusion) / 8)
    assert 0.0 <= report["macro_f1"] <= 1.0
    # the same figures as scoring the model's own predictions in this process
    classifier = Classifier.load(trained.model, device="cpu")
    texts, truth = eval_column(trained, "review"), eval_column(trained, "sentiment")
    agree = sum(p.label == t for p, t in zip(classifier.predict(texts), truth, strict=True))
    assert report["accuracy"] == pytest.approx(agree / 8)


def parse_predictions(stdout: str, texts: list[str]) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in stdout.strip().splitlines()]
    assert [r["text"] for r in rows] == texts
    for row in rows:
        assert row["label"] in LABELS
        assert set(row["probabilities"]) == set(LABELS)
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].__getitem__)
        assert row["confidence"] == pytest.approx(row["probabilities"][row["label"]])
    return rows


def test_predict_from_stdin_skips_blank_lines(trained: Trained) -> None:
    result = ok(
        run_cli("predict", "--model", trained.model, stdin="great, I love it\n\n   \ncafé ☕ was awful\n")
    )
    assert_quiet_stderr(result.stderr)
    parse_predictions(result.stdout, ["great, I love it", "café ☕ was awful"])


def test_predict_answers_each_stdin_line_while_the_pipe_stays_open(trained: Trained) -> None:
    # stdin used to be read to its end before anything was labelled: a producer keeping the pipe open got
    # no answer at all
    with subprocess.Popen(
        [str(TEXTCORE), "predict", "--model", str(trained.model), "--device", "cpu"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    ) as process:
        assert process.stdin is not None and process.stdout is not None
        try:
            answers = []
            for text in ("great, I love it", "awful service, very slow"):
                process.stdin.write(text + "\n")
                process.stdin.flush()
                ready, _, _ = select.select([process.stdout], [], [], 120)
                assert ready, f"no answer to {text!r} within 120 s while stdin stays open"
                answers.append(process.stdout.readline())
            rest, stderr = process.communicate("cheap and unreliable\n", timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, stderr
    rows = parse_predictions("".join(answers) + rest, ["great, I love it", "awful service, very slow",
                                                        "cheap and unreliable"])  # fmt: skip
    assert len(rows) == 3


def test_predict_from_a_file_matches_the_saved_model_loaded_twice(trained: Trained) -> None:
    texts = eval_column(trained, "review")
    first = Classifier.load(trained.model, device="cpu", precision="fp32")
    second = Classifier.load(trained.model, device="cpu", precision="fp32")
    assert first.labels == second.labels == LABELS
    probs = first.predict_proba(texts)
    np.testing.assert_array_equal(probs, second.predict_proba(texts))
    result = ok(
        run_cli(
            "predict",
            "--model",
            trained.model,
            "--data",
            trained.eval_data,
            "--text-column",
            "review",
            "--device",
            "cpu",
            "--precision",
            "fp32",
            "--batch-size",
            3,
        )
    )
    assert_quiet_stderr(result.stderr)
    cli_rows = parse_predictions(result.stdout, texts)
    for row, expected, prediction in zip(cli_rows, probs, first.predict(texts), strict=True):
        assert row["label"] == prediction.label
        assert [row["probabilities"][label] for label in LABELS] == pytest.approx(expected.tolist(), abs=1e-5)


class FlushedLines(io.StringIO):
    """A stdout that notes how many lines it held at each flush."""

    def __init__(self) -> None:
        super().__init__()
        self.at_flush: list[int] = []

    def flush(self) -> None:
        self.at_flush.append(self.getvalue().count("\n"))
        super().flush()


def test_predict_prints_a_file_as_it_is_labelled(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The whole file was labelled before the first line was printed: for a large file nothing came for
    # minutes, and every row's labels were held at once.
    texts = [f"review number {i}: {'great' if i % 2 else 'awful'} service" for i in range(40)]
    data = write_csv(tmp_path / "texts.csv", [(text, "") for text in texts])
    stdout = FlushedLines()
    monkeypatch.setattr(sys, "stdout", stdout)
    args = ["predict", "--model", str(trained.model), "--data", str(data), "--text-column", "review"]
    with pytest.raises(SystemExit) as ended:
        run_app(full_app(), [*args, "--device", "cpu", "--batch-size", "1"])
    assert ended.value.code == 0
    assert 0 < stdout.at_flush[0] < len(texts), (
        stdout.at_flush
    )  # the first batches' lines, out before the rest
    assert [row["text"] for row in parse_predictions(stdout.getvalue(), texts)] == texts


def test_onnx_backend_predicts_like_torch(trained: Trained) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx backend needs onnxruntime")
    texts = eval_column(trained, "review")
    args = ["predict", "--model", trained.model, "--data", trained.eval_data, "--text-column", "review"]
    torch_rows = parse_predictions(ok(run_cli(*args, "--device", "cpu", "--precision", "fp32")).stdout, texts)
    onnx_result = ok(run_cli(*args, "--backend", "onnx"))
    assert_quiet_stderr(onnx_result.stderr)
    onnx_rows = parse_predictions(onnx_result.stdout, texts)
    for a, b in zip(torch_rows, onnx_rows, strict=True):
        assert a["label"] == b["label"]
        assert [b["probabilities"][k] for k in LABELS] == pytest.approx(
            [a["probabilities"][k] for k in LABELS], abs=1e-4
        )


# ---- errors: exit code 2, one line on stderr naming the problem, no traceback ----------------------------

ErrorCase = Callable[[Path, Path, Path], tuple[list[object], str]]


def _train_args(
    data: Path, model: Path, out: Path, text: str = "review", label: str = "sentiment"
) -> list[object]:
    return [
        "train",
        "--data",
        data,
        "--text-column",
        text,
        "--label-column",
        label,
        "--base-model",
        model,
        "--epochs",
        1,
        "--batch-size",
        8,
        "--output",
        out,
    ]


def _missing_file(tmp: Path, model: Path, out: Path) -> tuple[list[object], str]:
    return _train_args(tmp / "absent.csv", model, out), f"{tmp / 'absent.csv'}: expected a readable data file"


def _missing_text_column(tmp: Path, model: Path, out: Path) -> tuple[list[object], str]:
    data = write_csv(tmp / "d.csv", [("good", "pos"), ("bad", "neg")])
    return _train_args(data, model, out, text="body"), "expected column(s) body; found review, sentiment"


def _missing_label_column(tmp: Path, model: Path, out: Path) -> tuple[list[object], str]:
    data = write_csv(tmp / "d.csv", [("good", "pos"), ("bad", "neg")])
    return _train_args(data, model, out, label="stars"), "expected column(s) stars; found review, sentiment"


def _header_only(tmp: Path, model: Path, out: Path) -> tuple[list[object], str]:
    data = write_csv(tmp / "d.csv", [])
    return _train_args(data, model, out), "expected at least one data row; found none"


def _single_class(tmp: Path, model: Path, out: Path) -> tuple[list[object], str]:
    data = write_csv(tmp / "d.csv", [(f"text {i}", "pos") for i in range(10)])
    return _train_args(data, model, out), "expected at least two distinct labels; found only ['pos']"


def _not_utf8(tmp: Path, model: Path, out: Path) -> tuple[list[object], str]:
    data = tmp / "latin1.csv"
    data.write_bytes(b"review,sentiment\ncaf\xe9 was good,pos\nbad,neg\n")
    return _train_args(data, model, out), "expected UTF-8 text"


def _unknown_base_model(tmp: Path, model: Path, out: Path) -> tuple[list[object], str]:
    data = write_csv(tmp / "d.csv", [("good", "pos"), ("bad", "neg")] * 4)
    return _train_args(data, tmp / "no-such-model", out), "cannot find model"


def _jsonl_row_without_label(tmp: Path, model: Path, out: Path) -> tuple[list[object], str]:
    data = tmp / "ragged.jsonl"
    rows = [{"review": "good", "sentiment": "pos"}, {"review": "bad"}, {"review": "ok", "sentiment": "neg"}]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return _train_args(data, model, out), "row 2 has no 'sentiment'"


def _too_few_rows_to_validate(tmp: Path, model: Path, out: Path) -> tuple[list[object], str]:
    data = write_csv(tmp / "d.csv", [("good", "pos"), ("bad", "neg")])  # one row a class: none to spare
    return _train_args(data, model, out), "expected enough rows to carve a validation split"


def _negative_seed(tmp: Path, model: Path, out: Path) -> tuple[list[object], str]:
    data = write_csv(tmp / "d.csv", [("good", "pos"), ("bad", "neg")] * 4)
    return [*_train_args(data, model, out), "--seed", -1], "seed: expected an integer in [0, 2**32)"


def _output_is_a_file(tmp: Path, model: Path, out: Path) -> tuple[list[object], str]:
    data = write_csv(tmp / "d.csv", [("good", "pos"), ("bad", "neg")] * 4)
    taken = tmp / "taken"
    taken.write_text("not a folder")
    return _train_args(data, model, taken), "expected a folder to write the model to; found a file"


def _output_under_a_file(tmp: Path, model: Path, out: Path) -> tuple[list[object], str]:
    # a traceback (NotADirectoryError) once the model was loaded and the run made its records folder
    data = write_csv(
        tmp / "d.csv", [row for i in range(8) for row in ((f"good {i}", "pos"), (f"bad {i}", "neg"))]
    )
    return _train_args(data, model, data / "model"), f"to write the model to; {data} is a file"


def _data_is_a_folder(tmp: Path, model: Path, out: Path) -> tuple[list[object], str]:
    (tmp / "d.csv").mkdir()
    return _train_args(
        tmp / "d.csv", model, out
    ), f"{tmp / 'd.csv'}: expected a readable data file; found a folder"


def _output_holds_files(tmp: Path, model: Path, out: Path) -> tuple[list[object], str]:
    data = write_csv(tmp / "d.csv", [("good", "pos"), ("bad", "neg")] * 4)
    taken = tmp / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("keep me")
    return _train_args(
        data, model, taken
    ), f"--output {taken}: expected a new or empty folder, or an earlier model's; it holds notes.txt"


def _flag_of_another_task(tmp: Path, model: Path, out: Path) -> tuple[list[object], str]:
    data = write_csv(tmp / "d.csv", [("good", "pos"), ("bad", "neg")] * 4)
    args = [*_train_args(data, model, out), "--negative-column", "sentiment"]
    return args, "--negative-column: hard negatives apply to --task embedding; found classification"


def _class_weights_with_multi_label(tmp: Path, model: Path, out: Path) -> tuple[list[object], str]:
    data = write_csv(tmp / "d.csv", [("good", "pos"), ("bad", "neg|pos")] * 4)
    args = [*_train_args(data, model, out), "--class-weights", "--multi-label"]
    return args, "class_weights: expected false for multi-label"


def _label_column_is_the_text_column(tmp: Path, model: Path, out: Path) -> tuple[list[object], str]:
    # every text was its own class: the run trained and reported accuracy near 0, without a word
    data = write_csv(tmp / "d.csv", [("good", "pos"), ("bad", "neg")] * 4)
    args = _train_args(data, model, out, text="review", label="review")
    return args, "--label-column 'review' is also the --text-column: the labels would be the texts themselves"


ERROR_CASES: dict[str, ErrorCase] = {
    "missing-file": _missing_file,
    "missing-text-column": _missing_text_column,
    "missing-label-column": _missing_label_column,
    "header-only": _header_only,
    "single-class": _single_class,
    "not-utf8": _not_utf8,
    "unknown-base-model": _unknown_base_model,
    "jsonl-row-without-label": _jsonl_row_without_label,
    "too-few-rows-to-validate": _too_few_rows_to_validate,
    "negative-seed": _negative_seed,
    "output-is-a-file": _output_is_a_file,
    "output-holds-files": _output_holds_files,
    "output-under-a-file": _output_under_a_file,
    "data-is-a-folder": _data_is_a_folder,
    "flag-of-another-task": _flag_of_another_task,
    "class-weights-with-multi-label": _class_weights_with_multi_label,
    "label-column-is-the-text-column": _label_column_is_the_text_column,
}


def assert_clean_failure(result: Outcome, expected: str) -> None:
    assert result.returncode == 2, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr; found {len(lines)}:\n{result.stderr}"
    assert lines[0].startswith("error: ")
    assert expected in lines[0], lines[0]


# The console script itself, as a user runs it, for a few refusals (and, below, one made after the model
# libraries load); the others in process (the same command, output and exit status, without a new
# interpreter each).
IN_A_SUBPROCESS = {"missing-file", "not-utf8", "unknown-base-model", "output-holds-files"}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_train_errors_exit_2_with_one_line(case: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    output = tmp_path / "out"
    args, expected = ERROR_CASES[case](tmp_path, tiny_model_dir, output)
    result = (run_cli if case in IN_A_SUBPROCESS else invoke_cli)(*args)
    assert_clean_failure(result, expected)
    assert result.stdout == ""
    assert not output.exists(), "a failed run must not leave a model folder behind"


def test_evaluate_refuses_a_label_column_that_is_the_text_column(trained: Trained, tmp_path: Path) -> None:
    # Every text was its own label: with texts the model knew as labels, it scored them as if they were.
    data = write_csv(tmp_path / "same.csv", [("pos", "x"), ("neg", "y")])
    result = invoke_cli(
        "evaluate",
        "--model",
        trained.model,
        "--data",
        data,
        "--text-column",
        "review",
        "--label-column",
        "review",
    )
    assert_clean_failure(
        result, "--label-column 'review' is also the --text-column: the labels would be the texts themselves"
    )
    assert result.stdout == ""


def test_training_into_an_earlier_models_folder_replaces_it_whole(
    trained: Trained, tmp_path: Path, tiny_model_dir: Path
) -> None:
    # A second run into the folder of the first used to write over its files, and for another task leave a
    # mix: an encoder beside the first run's classifier head and labels, which `predict` then served.
    folder = tmp_path / "model"
    shutil.copytree(trained.model, folder)
    (folder / "notes.txt").write_text("the first run's folder")
    pairs = tmp_path / "pairs.csv"
    write_csv(pairs, [(f"question {i}", f"answer {i}") for i in range(8)], ("review", "sentiment"))
    args = ["--text-column", "review", "--label-column", "sentiment", "--epochs", 1, "--output", folder,
            "--base-model", tiny_model_dir]  # fmt: skip
    result = invoke_cli("train", "--task", "embedding", "--data", pairs, *args)
    assert result.returncode == 0, result.stderr
    assert f"replacing the earlier model in {folder}" in result.stderr
    assert read_metadata(folder)["task"] == "embedding"
    left = {"labels.json", "head.safetensors", "notes.txt"} & {p.name for p in folder.iterdir()}
    assert not left, f"the earlier classifier's files stayed beside the new encoder: {left}"

    again = invoke_cli("train", "--task", "classification", "--data", trained.data, *args)
    assert again.returncode == 0, again.stderr
    assert read_metadata(folder)["task"] == "classification"
    predicted = invoke_cli("predict", "--model", folder, stdin="good\n")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout.splitlines()[-1])["label"] in {"pos", "neg"}

    assert not list(tmp_path.glob(".model.earlier-*")), "the set-aside earlier model was not removed"


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_failed_run_into_an_earlier_models_folder_leaves_that_model_as_it_was(
    trained: Trained, tmp_path: Path, tiny_model_dir: Path
) -> None:
    # The earlier model was emptied out of --output first, then the run failed (a misspelt column, a base
    # model that cannot load, the run stopped) and left nothing: a typo cost the model. It is now set aside
    # until the run succeeds, and put back when it fails; a misspelt column or base model name is refused
    # before anything is moved.
    folder = tmp_path / "model"
    shutil.copytree(trained.model, folder)
    before = snapshot(folder)
    common = ["--task", "classification", "--data", trained.data, "--label-column", "sentiment",
              "--output", folder, "--epochs", 1]  # fmt: skip
    typo = run_cli("train", *common, "--text-column", "txt", "--base-model", tiny_model_dir)
    assert_clean_failure(typo, "expected column(s) txt")  # found before anything is moved: one line
    unloadable = tmp_path / "unloadable"  # found by name, so the run starts; then its weights are missing
    unloadable.mkdir()
    shutil.copy(tiny_model_dir / "config.json", unloadable / "config.json")
    broken = invoke_cli("train", *common, "--text-column", "review", "--base-model", unloadable)
    assert broken.returncode == 2, broken.stderr
    assert f"the run did not finish: the earlier model is back in {folder}" in broken.stderr
    assert broken.stderr.strip().splitlines()[-1].startswith("error: expected safetensors weights")
    assert snapshot(folder) == before
    assert not list(tmp_path.glob(".model.earlier-*"))

    # A run that would read its data or base model from the folder it empties is refused up front.
    inside = tmp_path / "model" / "train.csv"
    shutil.copy(trained.data, inside)
    before = snapshot(folder)
    columns = ["--text-column", "review", "--label-column", "sentiment", "--output", folder]
    for args in (["--data", inside], ["--data", trained.data, "--base-model", folder]):
        reads_it = run_cli("train", "--task", "classification", *args, *columns)
        assert_clean_failure(reads_it, f"--output {folder}: the run would empty it, yet it reads")
    assert snapshot(folder) == before


NOT_A_MODEL: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "missing": (
        lambda tmp, _: tmp / "absent",
        "{tmp}/absent: expected a trained model folder; it does not exist",
    ),
    "a-file": (
        lambda tmp, _: write_csv(tmp / "m.csv", [("good", "pos")]),
        "{tmp}/m.csv: expected a trained model folder; found a file",
    ),
    "a-base-model": (
        lambda _, base: base,
        "expected labels.json in {base}; it is not a trained classifier folder",
    ),
}


@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize("case", list(NOT_A_MODEL))
def test_a_model_folder_that_is_not_a_classifier_is_named(
    command: str, case: str, tmp_path: Path, tiny_model_dir: Path
) -> None:
    make, expected = NOT_A_MODEL[case]
    data = write_csv(tmp_path / "eval.csv", [("good", "pos"), ("bad", "neg")])
    args = ["--data", data, "--text-column", "review"]
    if command == "evaluate":
        args += ["--label-column", "sentiment"]
    result = invoke_cli(command, "--model", make(tmp_path, tiny_model_dir), *args)
    assert_clean_failure(result, expected.format(tmp=tmp_path, base=tiny_model_dir))
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["predict", "--model", "{model}", "--data", "{folder}"], "texts.csv"),
        (["train", "--task", "mlm", "--data", "{folder}", "--output", "{out}"], "corpus.txt"),
        (["train", "--task", "token-classification", "--data", "{folder}", "--output", "{out}"], "ner.conll"),
    ],
)
def test_a_folder_given_as_a_data_file_is_named_a_folder(
    trained: Trained, tmp_path: Path, args: list[str], name: str
) -> None:
    folder = tmp_path / name
    folder.mkdir()
    values = {"model": trained.model, "folder": folder, "out": tmp_path / "out"}
    result = invoke_cli(*(arg.format(**values) for arg in args))
    assert_clean_failure(result, f"{folder}: expected a readable")
    assert "found a folder" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("batch_size", [0, -3])
def test_predict_refuses_a_batch_size_below_one(trained: Trained, batch_size: int) -> None:
    result = invoke_cli("predict", "--model", trained.model, "--batch-size", batch_size, stdin="great\n")
    assert_clean_failure(result, f"expected batch_size >= 1; found {batch_size}")
    assert result.stdout == ""


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_loading_a_classifier_refuses_a_max_length_of_zero(trained: Trained, backend: str) -> None:
    # 0 used to stand for "the trained length" without a word, where every other size below 8 is refused
    with pytest.raises(InvalidInput, match="expected max_length >= 8; found 0"):
        load_predictor(trained.model, backend=backend, device="cpu", max_length=0)
    with pytest.raises(InvalidInput, match="expected batch_size >= 1; found 0"):
        load_predictor(trained.model, backend=backend, device="cpu", batch_size=0)


def test_predict_refuses_a_text_column_without_data(trained: Trained) -> None:
    result = invoke_cli("predict", "--model", trained.model, "--text-column", "review", stdin="great\n")
    assert_clean_failure(result, "expected --text-column only with --data")
    assert result.stdout == ""


def test_predict_refuses_stdin_that_is_not_utf8(trained: Trained) -> None:
    result = subprocess.run(
        [str(TEXTCORE), "predict", "--model", str(trained.model)],
        input=b"fine\ncaf\xe9 prices rose\n",
        capture_output=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        check=False,
    )
    outcome = InProcess(result.returncode, result.stdout.decode(), result.stderr.decode())
    assert_clean_failure(outcome, "standard input, line 2: expected UTF-8 text")


def test_predict_with_a_damaged_model_folder_fails_clearly(trained: Trained, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(trained.model, damaged)
    (damaged / "head.safetensors").write_bytes(b"not a safetensors file")
    result = run_cli("predict", "--model", damaged, stdin="great\n")  # fails after the libraries load
    assert_clean_failure(result, "head.safetensors: expected the head of a classifier of 2 labels")


def test_evaluate_with_labels_the_model_does_not_know(trained: Trained, tmp_path: Path) -> None:
    data = write_csv(
        tmp_path / "three.csv", [("good", "pos"), ("meh", "neutral"), ("bad", "neg"), ("so-so", "mixed")]
    )
    result = invoke_cli(
        "evaluate",
        "--model",
        trained.model,
        "--data",
        data,
        "--text-column",
        "review",
        "--label-column",
        "sentiment",
    )
    assert_clean_failure(result, "labels ['mixed', 'neutral'] are not known to the model")
    assert result.stdout == ""


# ---- embedding task ----------------------------------------------------------------------------------------


def test_train_embedding_writes_a_loadable_encoder(tmp_path: Path, tiny_model_dir: Path) -> None:
    topics = ["password", "invoice", "delivery", "refund", "login", "shipping", "discount", "warranty"]
    pairs = [
        {"anchor": f"question {i} about my {topic}", "positive": f"answer {i}: how to handle a {topic}"}
        for i in range(3)
        for topic in topics
    ]  # 24 pairs
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    output = tmp_path / "encoder"
    result = ok(
        run_cli(
            "train",
            "--task",
            "embedding",
            "--data",
            data,
            "--text-column",
            "anchor",
            "--label-column",
            "positive",
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
    assert_quiet_stderr(result.stderr)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"mrr@10", "recall@1"} <= set(summary["validation"])
    for name in (
        "config.json",
        "model.safetensors",
        "metadata.json",
        "training/metrics.jsonl",
        "training/curves.png",
    ):
        assert (output / name).is_file(), name
    assert not (output / "head.safetensors").exists()
    meta = json.loads((output / "metadata.json").read_text())
    assert meta["task"] == "embedding"
    assert meta["base_model"] == str(tiny_model_dir)
    assert meta["data"]["file"]["rows"] == 24
    assert meta["data"]["file"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert meta["data"]["train"]["rows"] + meta["data"]["validation"]["rows"] == 24

    texts = [
        "where is my delivery",
        "a much longer question about the warranty of the thing I bought",
        "refund",
    ]
    encoder = Encoder.from_pretrained(output, device="cpu", precision="fp32")
    vectors = encoder.encode(texts)
    assert vectors.shape == (3, 32)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    base = Encoder.from_pretrained(tiny_model_dir, device="cpu", precision="fp32").encode(texts)
    assert not np.allclose(vectors, base, atol=1e-6), "training did not change the encoder"


def test_registry_commands_register_promote_and_list(trained: Trained, tmp_path: Path) -> None:
    root = tmp_path / "registry"
    first = json.loads(
        ok(
            run_cli(
                "registry",
                "register",
                "--root",
                root,
                "--name",
                "sentiment",
                "--model",
                trained.model,
                "--promote",
            )
        ).stdout.splitlines()[-1]
    )
    assert first["version"] == 1 and first["active"] is True
    ok(run_cli("registry", "register", "--root", root, "--name", "sentiment", "--model", trained.model))
    promoted = json.loads(
        ok(
            run_cli("registry", "promote", "--root", root, "--name", "sentiment", "--version", "2")
        ).stdout.splitlines()[-1]
    )
    assert promoted["version"] == 2
    assert json.loads((root / "sentiment" / "active").read_text())["version"] == 2
    listing = ok(run_cli("registry", "list", "--root", root, "--name", "sentiment")).stdout
    assert "yes" in listing
    missing = run_cli("registry", "promote", "--root", root, "--name", "sentiment", "--version", "9")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [missing.stderr.strip()]
    assert "version 9" in missing.stderr
