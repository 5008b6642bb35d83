"""`textcore registry delete` and `prune`: a registry fed by nightly retrains drops the versions it no longer
needs, never the active one; each removed version is renamed out of sight whole, then removed."""

from __future__ import annotations

import json
from pathlib import Path

from tests.shared.test_cli import run_cli
from tests.shared.test_registry import make_model
from tests.shared.test_registry_cli import registry_cli
from textcore.registry import ModelRegistry


def filled(tmp_path: Path, versions: int, active: int | None) -> Path:
    """A registry root holding `versions` versions of clf, `active` the active one."""
    root = tmp_path / "registry"
    registry = ModelRegistry(root)
    for n in range(1, versions + 1):
        registry.register("clf", make_model(tmp_path, f"m{n}"), promote=n == active)
    return root


def on_disk(root: Path) -> list[str]:
    """What the name's folder holds besides its lock, alias and history: no hidden leftover either."""
    return sorted(
        p.name for p in (root / "clf").iterdir() if p.name not in {".lock", "active", "history.jsonl"}
    )


def deleted(stdout: str) -> list[int]:
    return [entry["version"] for entry in json.loads(stdout)["deleted"]]


def test_delete_removes_one_version_and_refuses_the_active_one_or_an_unknown_one(tmp_path: Path) -> None:
    # There was no command to remove a version (only ModelRegistry.delete in Python).
    root = filled(tmp_path, 3, active=2)
    result = registry_cli("delete", root, "--version", 1)
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)["deleted"]
    assert entry["version"] == 1 and entry["path"] == str(root / "clf" / "v0001")
    assert on_disk(root) == ["v0002", "v0003"]
    events = ModelRegistry(root).history("clf")
    assert events[-1]["event"] == "delete" and events[-1]["version"] == 1

    for version, expected in (
        (2, "error: version 2 of 'clf' is active; promote another before deleting it"),
        (1, "error: model 'clf' has no version 1; available: [2, 3]"),
    ):
        refused = registry_cli("delete", root, "--version", version)
        assert refused.exit_code == 2, refused.output
        assert refused.stderr.strip().splitlines() == [expected]
        assert refused.stdout == ""
    assert on_disk(root) == ["v0002", "v0003"]


def test_prune_keeps_the_active_version_and_the_newest_others(tmp_path: Path) -> None:
    root = filled(tmp_path, 5, active=2)
    dry = registry_cli("prune", root, "--keep", 2, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert deleted(dry.stdout) == [1, 3] and json.loads(dry.stdout)["dry_run"] is True
    assert on_disk(root) == ["v0001", "v0002", "v0003", "v0004", "v0005"]

    pruned = registry_cli("prune", root, "--keep", 2)
    assert pruned.exit_code == 0, pruned.output
    assert deleted(pruned.stdout) == [1, 3] and json.loads(pruned.stdout)["dry_run"] is False
    assert on_disk(root) == ["v0002", "v0004", "v0005"]
    assert ModelRegistry(root).active("clf").version == 2

    again = registry_cli("prune", root, "--keep", 2)
    assert again.exit_code == 0 and deleted(again.stdout) == []
    assert ModelRegistry(root).register("clf", make_model(tmp_path, "m6")).version == 6  # numbers not reused
    none_kept = registry_cli("prune", root, "--keep", 0)
    assert none_kept.exit_code == 0 and deleted(none_kept.stdout) == [4, 5, 6]
    assert on_disk(root) == ["v0002"]


def test_prune_with_nothing_active_keeps_the_newest(tmp_path: Path) -> None:
    root = filled(tmp_path, 3, active=None)
    pruned = registry_cli("prune", root, "--keep", 1)
    assert pruned.exit_code == 0 and deleted(pruned.stdout) == [1, 2], pruned.output
    assert on_disk(root) == ["v0003"]


def test_prune_refuses_a_negative_keep_and_an_alias_that_names_no_version(tmp_path: Path) -> None:
    root = filled(tmp_path, 2, active=None)
    negative = run_cli("registry", "prune", "--root", root, "--name", "clf", "--keep", -1)
    assert negative.returncode == 2
    (line,) = negative.stderr.strip().splitlines()
    assert line == "error: invalid value for '--keep': Input should be greater than or equal to 0"
    (root / "clf" / "active").write_text("{}", encoding="utf-8")  # hand-edited: it may mean a version
    torn = registry_cli("prune", root, "--keep", 0)
    assert torn.exit_code == 2
    assert torn.stderr.strip().splitlines() == [
        f"error: could not prune clf in the registry {root}: {root / 'clf' / 'active'}: expected a JSON "
        "object with an integer version; found '{}'; repair or remove the alias first"
    ]
    assert on_disk(root) == ["v0001", "v0002"]
