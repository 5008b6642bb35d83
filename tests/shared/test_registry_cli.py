"""`textcore registry` commands in process (typer's CliRunner): only `register` creates a missing registry
root; the others need it to exist, so a mistyped --root is one error line and leaves nothing behind."""

from __future__ import annotations

import os
from collections.abc import Callable
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
        ("delete", ["--version", 1]),
        ("prune", ["--keep", 1]),
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


def test_register_names_a_missing_model_folder_as_the_command_line_gave_it(tmp_path: Path) -> None:
    # It said "source_dir must be an existing model folder": a parameter of the Python API, not --model.
    missing = tmp_path / "no-such-model"
    result = registry_cli("register", tmp_path / "registry", "--model", missing)
    assert result.exit_code == 2, result.output
    expected = f"error: {missing}: expected a model folder to register; found nothing there"
    assert result.stderr.strip().splitlines() == [expected]


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


# each damages a registry holding version 1 of clf; returns the command and what its error line names
Damage = Callable[[Path], tuple[list[object], str]]


def _active_is_a_folder(root: Path) -> tuple[list[object], str]:
    (root / "clf" / "active").mkdir()
    problem = f"{root / 'clf' / 'active'}: expected a file; found a folder"
    return ["promote", "--version", 1], f"{problem}; repair or remove the alias first"


def _active_names_no_version(root: Path) -> tuple[list[object], str]:
    (root / "clf" / "active").write_text('{"version": "1"}', encoding="utf-8")  # hand-edited: a string
    found = """'{"version": "1"}'"""
    problem = f"{root / 'clf' / 'active'}: expected a JSON object with an integer version; found {found}"
    return ["promote", "--version", 1], f"{problem}; repair or remove the alias first"


def _history_is_a_folder(root: Path) -> tuple[list[object], str]:
    history = root / "clf" / "history.jsonl"
    history.unlink()
    history.mkdir()
    return [
        "register",
        "--model",
        make_model(root.parent, "b"),
    ], f"{history}: expected a file; found a folder"


def _lock_is_a_folder(root: Path) -> tuple[list[object], str]:
    lock = root / "clf" / ".lock"
    lock.unlink()
    lock.mkdir()
    return ["promote", "--version", 1], f"{lock}: expected a file; found a folder"


def _root_not_writable(root: Path) -> tuple[list[object], str]:
    root.chmod(0o555)
    return ["register", "--model", make_model(root.parent, "b")], f"{root}: permission denied"


@pytest.mark.parametrize(
    "damage",
    [
        _active_is_a_folder,
        _active_names_no_version,
        _history_is_a_folder,
        _lock_is_a_folder,
        pytest.param(
            _root_not_writable,
            marks=pytest.mark.skipif(os.geteuid() == 0, reason="root writes to a folder of mode 0555"),
        ),
    ],
)
def test_os_errors_in_the_registry_are_one_error_line(tmp_path: Path, damage: Damage) -> None:
    root = tmp_path / "registry"
    assert registry_cli("register", root, "--model", make_model(tmp_path, "a")).exit_code == 0
    (command, *more), problem = damage(root)
    before = sorted(root.rglob("*"))
    try:
        result = registry_cli(str(command), root, *more)
    finally:
        root.chmod(0o755)
    assert result.exit_code == 2, result.output
    doing = "register clf" if command == "register" else "promote version 1 of clf"
    expected = f"error: could not {doing} in the registry {root}: {problem}"
    assert result.stderr.strip().splitlines() == [expected]
    assert sorted(root.rglob("*")) == before  # no v0002, no .incoming-*, no .active-* left behind


@pytest.mark.parametrize("where", ["root", "name"])
def test_a_file_where_the_registry_needs_a_folder_is_one_error_line(tmp_path: Path, where: str) -> None:
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    root = tmp_path / "a-file" / "registry" if where == "root" else tmp_path / "registry"
    args = ["registry", "register", "--root", str(root), "--name", "a-file", "--model"]
    if where == "name":
        root.mkdir()
        (root / "a-file").write_text("", encoding="utf-8")
    result = CliRunner().invoke(full_app(), [*args, str(make_model(tmp_path, "a"))])
    assert result.exit_code == 2, result.output
    problem = (
        f"{root}: expected a folder; found a file at some part of that path"
        if where == "root"
        else f"{root / 'a-file'}: expected a folder; found a file"
    )
    expected = f"error: could not register a-file in the registry {root}: {problem}"
    assert result.stderr.strip().splitlines() == [expected]
    if where == "name":
        assert sorted(p.name for p in root.iterdir()) == ["a-file"]
