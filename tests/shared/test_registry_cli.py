"""`textcore registry` commands in process (typer's CliRunner): only `register` creates a missing registry
root; the others need it to exist, so a mistyped --root is one error line and leaves nothing behind."""

from __future__ import annotations

import os
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


def test_bytes_that_are_not_utf8_in_the_registry_or_the_source_are_no_traceback(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    assert (
        registry_cli(
            "register", root, "--model", make_model(tmp_path, "a"), "--note", "Überprüfung"
        ).exit_code
        == 0
    )
    history = root / "clf" / "history.jsonl"
    # a crash in the middle of an append: the line ends inside the two bytes of "Ü", with no newline
    torn = '{"ts": "2026-01-01T00:00:00Z", "event": "note", "note": "Ü'.encode()[:-1]
    history.write_bytes(history.read_bytes() + torn)
    registered = registry_cli("register", root, "--model", make_model(tmp_path, "b"))
    assert registered.exit_code == 0, registered.output
    assert '"version": 2' in registered.stdout
    (root / "clf" / "v0001" / "metadata.json").write_bytes(b"\xff\xfe not json")
    assert registry_cli("promote", root, "--version", 1).exit_code == 0
    listing = registry_cli("list", root)
    assert listing.exit_code == 0 and "yes" in listing.stdout, listing.output

    source = make_model(tmp_path, "c")
    (source / "metadata.json").write_bytes(b"\xff{}")
    result = registry_cli("register", root, "--model", source)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"error: {source}/metadata.json must hold a JSON object; found something else"
    ]
    assert sorted(p.name for p in (root / "clf").iterdir() if p.name.startswith("v")) == ["v0001", "v0002"]


@pytest.mark.parametrize("odd_file", ["dangling link", "named pipe"])
def test_a_model_folder_with_a_file_that_cannot_be_copied_is_one_error_line(
    tmp_path: Path, odd_file: str
) -> None:
    root = tmp_path / "registry"
    assert registry_cli("register", root, "--model", make_model(tmp_path, "a")).exit_code == 0
    source = make_model(tmp_path, "b")
    odd = source / "model-2.safetensors"
    if odd_file == "dangling link":
        odd.symlink_to(tmp_path / "blob-never-written")
    else:
        os.mkfifo(odd)
    result = registry_cli("register", root, "--model", source)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: could not copy {odd} from the model folder {source}: ")
    assert sorted(p.name for p in (root / "clf").iterdir()) == [".lock", "history.jsonl", "v0001"]
    again = registry_cli("register", root, "--model", make_model(tmp_path, "c"))
    assert again.exit_code == 0 and '"version": 2' in again.stdout, again.output
