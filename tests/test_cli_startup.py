"""Every command line answers --help without importing torch, the database layer or the web framework."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "sqlalchemy", "fastapi", "numpy")
COMMANDS = ["textcore.cli", "customer_service.cli", "finance_sentiment.cli", "recommender.cli"]


@pytest.mark.parametrize("module", COMMANDS)
def test_a_command_line_module_imports_nothing_heavy(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]", f"{module} imports {probe.stdout.strip()} before any command runs"


@pytest.mark.parametrize("module", COMMANDS)
def test_help_lists_the_commands(module: str) -> None:
    code = f"import {module}; {module}.main()"
    command = [sys.executable, "-c", code, "--help"]
    shown = subprocess.run(command, capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr
    expected = ("train", "evaluate") if module == "textcore.cli" else ("train", "evaluate", "serve")
    assert all(name in shown.stdout for name in expected), shown.stdout


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--text-column", "body"], "expected column(s) body; found review, sentiment"),
        (["--base-model", "no-such-model"], "cannot find model 'no-such-model'"),
    ],
)
def test_a_training_run_refusing_its_data_or_base_model_imports_no_model_library(
    tmp_path: Path, options: list[str], expected: str
) -> None:
    # The refusal of a misspelt column came after seconds of importing transformers, only to quiet it; that
    # of a misspelt base model after importing the whole trainer (about 8 s on two cores).
    data = tmp_path / "d.csv"
    data.write_text("review,sentiment\ngood,pos\nbad,neg\n", encoding="utf-8")
    argv = [
        "textcore",
        "train",
        "--data",
        str(data),
        "--text-column",
        "review",
        "--label-column",
        "sentiment",
    ]
    argv += [*options, "--output", str(tmp_path / "out")]
    probe = _refusal("textcore.cli", argv)
    assert expected in probe.stderr
    assert probe.stdout.strip() == "2 []", probe.stdout
    assert not (tmp_path / "out").exists()


def _refusal(module: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `module`'s command line on `argv` in a new interpreter; its stdout is the exit code and which of
    torch, transformers and huggingface_hub were imported by then."""
    code = (
        f"import sys; sys.argv = {argv!r}; import {module}\n"
        f"try:\n    {module}.main()\nexcept SystemExit as exit:\n    code = exit.code\n"
        f"print(code, sorted(m for m in {HEAVY[:2]!r} + ('huggingface_hub',) if m in sys.modules))"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


INTENTS = "text,intent\nhello there,greet\nhi,greet\nbye now,leave\nsee you,leave\n"
FAQS = "id,question,answer\nf1,How do I pay?,By card.\nf2,Where is my order?,Track it online.\n"
EVENTS = "user_id,item_id,timestamp,rating\nu1,a,1,5\nu1,b,2,5\nu2,a,1,5\nu2,b,2,4\n"
ITEMS = "item_id,title,text\na,A,aa\nb,B,bb\n"


@pytest.mark.parametrize(
    ("module", "argv", "expected"),
    [
        (
            "customer_service.cli",
            ["train-intents", "--data", "i.csv", "--base-model", "nosuch", "--output", "out"],
            "error: cannot find model 'nosuch'",
        ),
        (
            "customer_service.cli",
            ["evaluate-intents", "--model", "nomodel", "--data", "i.csv"],
            "error: nomodel: expected a trained model folder; it does not exist",
        ),
        (
            "customer_service.cli",
            ["train-retriever", "--kb", "missing.csv", "--output", "out"],
            "error: missing.csv: expected a readable data file; it does not exist",
        ),
        (
            "customer_service.cli",
            ["evaluate-retrieval", "--kb", "kb.csv", "--queries", "kb.csv", "--query-column", "query"],
            "error: kb.csv: expected rows with columns ['query']",
        ),
        (
            "textcore.cli",
            ["evaluate", "--model", "nomodel", "--data", "i.csv", "--label-column", "intent"],
            "error: nomodel: expected a trained model folder; it does not exist",
        ),
        (
            "finance_sentiment.cli",
            ["evaluate", "--model", "nomodel", "--data", "i.csv", "--label-column", "intent"],
            "error: nomodel: expected a trained model folder; it does not exist",
        ),
        (
            "finance_sentiment.cli",
            ["train", "--data", "i.csv", "--label-column", "intent", "--output", "out"],
            "error: expected 'intent' labels among negative, neutral, positive",
        ),
        (
            "recommender.cli",
            [
                "train",
                "--interactions",
                "e.csv",
                "--items",
                "items.csv",
                "--base-model",
                "nosuch",
                "--output",
                "out",
            ],
            "error: cannot find model 'nosuch'",
        ),
        (
            "recommender.cli",
            ["evaluate", "--model", "nomodel", "--interactions", "e.csv", "--items", "items.csv"],
            "error: expected a recommender model folder with recommender.json in nomodel; it is not there",
        ),
    ],
)
def test_a_service_command_refusing_its_data_or_model_imports_no_model_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, argv: list[str], expected: str
) -> None:
    # These refusals came after importing the service's model code (torch, transformers): 15-30 s apiece.
    for name, text in {"i.csv": INTENTS, "kb.csv": FAQS, "e.csv": EVENTS, "items.csv": ITEMS}.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    probe = _refusal(module, [module.split(".", maxsplit=1)[0].replace("_", "-"), *argv])
    assert probe.stderr.strip().splitlines() == [probe.stderr.strip()], probe.stderr
    assert probe.stderr.startswith(expected), probe.stderr
    assert probe.stdout.strip() == "2 []", probe.stdout
    assert not (tmp_path / "out").exists()
