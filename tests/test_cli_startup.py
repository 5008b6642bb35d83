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
    code = (
        f"import sys; sys.argv = {argv!r}; import textcore.cli\n"
        "try:\n    textcore.cli.main()\nexcept SystemExit as exit:\n    code = exit.code\n"
        f"print(code, sorted(m for m in {HEAVY[:2]!r} + ('huggingface_hub',) if m in sys.modules))"
    )
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert expected in probe.stderr
    assert probe.stdout.strip() == "2 []", probe.stdout
    assert not (tmp_path / "out").exists()
