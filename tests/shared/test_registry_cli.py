"""`textcore registry` commands in process (typer's CliRunner): only `register` creates a missing registry
root; the others need it to exist, so a mistyped --root is one error line and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.shared.test_registry import make_model
from textcore.cli import full_app
from textcore.errors import NotFound
from textcore.registry import ModelRegistry


def registry_cli(command: str, root: Path, *more: object) -> Result:
    """Run `textcore registry COMMAND --root ROOT --name clf MORE...`."""
    args = ["registry", command, "--root", str(root), "--name", "clf", *map(str, more)]
    return CliRunner().invoke(full_app(), args)


@pytest.mark.parametrize(
    ("command", "more"),
    [
        ("list", []),
        ("promote", ["--version", 1]),
        ("gate", ["--version", 1, "--eval-data", "eval.csv"]),
        ("retrain", ["--data", "new.csv", "--eval-data", "eval.csv"]),
    ],
)
def test_commands_other_than_register_leave_a_missing_root_alone(
    tmp_path: Path, command: str, more: list[object]
) -> None:
    root = tmp_path / "typo-root"
    result = registry_cli(command, root, *more)
    assert result.exit_code == 2, result.output
    expected = f"error: registry root {root}: expected an existing folder; it does not exist"
    assert result.stderr.strip().splitlines() == [expected]
    assert not root.exists()


def test_register_creates_the_root_and_the_others_then_use_it(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    assert registry_cli("register", root, "--model", make_model(tmp_path, "a")).exit_code == 0
    assert registry_cli("promote", root, "--version", 1).exit_code == 0
    listing = registry_cli("list", root)
    assert listing.exit_code == 0 and "clf in" in listing.stdout and "yes" in listing.stdout


def test_a_registry_that_must_exist_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="expected an existing folder"):
        ModelRegistry(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()
    ModelRegistry(tmp_path / "made").register("clf", make_model(tmp_path, "a"))
    assert ModelRegistry(tmp_path / "made", create=False).names() == ["clf"]
