"""Every command line answers --help without importing torch, the database layer or the web framework."""

from __future__ import annotations

import subprocess
import sys

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
