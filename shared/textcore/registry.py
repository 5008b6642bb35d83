"""Versioned model folders on disk, with an ``active`` alias that running services can follow (they do through
`textcore.active_model.ActiveModelWatcher`, also importable from here).

Layout: ``root/<name>/v0001/`` (a model folder), ``root/<name>/active`` (JSON ``{"version", "promoted_at",
"note"}``), ``root/<name>/history.jsonl`` (append-only event log) and ``root/<name>/.lock`` (flock target for
writers). Versions are copied to a hidden temp folder in ``root`` then renamed into place, and ``active`` is
swapped with ``os.replace``, so readers never see half-written state; a register that fails leaves nothing
behind, not even the folder of a new name, and the copy a killed one left in root is removed by a later
writer (`registry_files.remove_stale_staging`), as are the temporaries a crashed promote or delete left in
a name's folder (`registry_files.remove_leftovers`). A delete or prune renames each version into a hidden
``.deleting-*`` folder under the lock before removing it, and never touches the active version. Version
numbers are never reused. A version holds
safetensors weights: a folder without them is refused at register (a version without them, at promote). A
history line torn by a crash is skipped (and logged) when read, and the next event starts on a new line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from textcore.active_model import ActiveModelWatcher
from textcore.errors import Conflict, InvalidInput, NotFound
from textcore.registry_files import (
    ALIAS_TEMP_PREFIX,
    TRASH_PREFIX,
    append_event,
    copy_model,
    read_active,
    read_history,
    read_json,
    remove_if_unused,
    remove_leftovers,
    remove_stale_staging,
    require_active,
    require_weights,
    staging_folder,
)

__all__ = ["ActiveModelWatcher", "ModelRegistry", "ModelVersion"]


_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_VERSION_DIR_RE = re.compile(r"v([0-9]{4,})")
_VERSION_REF_RE = re.compile(r"v?([0-9]+)")
_STAMP_FILE = ".registry.json"  # written inside each version folder: when and from where it was registered


def _now(timestamp: float | None = None) -> str:
    moment = datetime.now(UTC) if timestamp is None else datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One registered version of a model.

    Attributes:
        name: The model name.
        version: The version number, starting at 1.
        path: The version's folder; pass it to the model loader.
        created_at: When it was registered, ISO 8601 in UTC.
        metadata: The folder's ``metadata.json`` object, or ``{}`` when it has none.
    """

    name: str
    version: int
    path: Path
    created_at: str
    metadata: dict[str, object]


class ModelRegistry:
    """Numbered versions of model folders per name, with an ``active`` alias and a history log.

    Safe for concurrent writers (threads or processes) on one local filesystem.

    Args:
        root: The registry folder; created if missing when `create` is true.
        create: False for a registry that must exist already (reading, promoting): a mistyped root is then
            an error instead of a new empty folder.

    Raises:
        InvalidInput: `root` is a file.
        NotFound: `root` does not exist and `create` is false.
    """

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise InvalidInput(f"registry root {self.root}: expected a folder; found a file")
        if not create and not self.root.is_dir():
            raise NotFound(f"registry root {self.root}: expected an existing folder; it does not exist")
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, name: str, *, must_exist: bool = True) -> Path:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise InvalidInput(
                f"model name must match {_NAME_RE.pattern!r} (lowercase, <= 64 chars); got {name!r}"
            )
        path = self.root / name
        if must_exist and not path.is_dir():
            raise NotFound(f"no model named {name!r} in {self.root}; known: {self.names() or 'none'}")
        return path

    @contextlib.contextmanager
    def _locked(self, model_dir: Path) -> Iterator[None]:
        fd = os.open(model_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            remove_leftovers(model_dir)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    @staticmethod
    def _version_dirs(model_dir: Path) -> dict[int, Path]:
        found = [(_VERSION_DIR_RE.fullmatch(p.name), p) for p in model_dir.iterdir() if p.is_dir()]
        return dict(sorted((int(m.group(1)), p) for m, p in found if m))

    @staticmethod
    def _load(name: str, version: int, path: Path) -> ModelVersion:
        stamp = read_json(path / _STAMP_FILE)
        created = stamp.get("created_at") if isinstance(stamp, dict) else None
        created = created if isinstance(created, str) else _now(path.stat().st_mtime)
        meta = read_json(path / "metadata.json")
        return ModelVersion(name, version, path, created, meta if isinstance(meta, dict) else {})

    def register(
        self, name: str, source_dir: str | os.PathLike[str], *, promote: bool = False, note: str = ""
    ) -> ModelVersion:
        """Copies a model folder in as the next version of ``name``.

        Args:
            name: The model name (``^[a-z0-9][a-z0-9._-]{0,63}$``).
            source_dir: A folder holding ``metadata.json`` or ``config.json``, and safetensors weights.
            promote: Also make the new version active.
            note: Free text kept in the history.

        Returns:
            The new version.

        Raises:
            InvalidInput: Bad name, the folder is not a model folder (no metadata.json or config.json, or no
                safetensors weights), or a file in it cannot be copied (a dangling link, a named pipe); with
                ``promote``, the ``active`` alias names no version (`registry_files.require_active`).
            NotFound: ``source_dir`` does not exist or is not a folder.
            OSError: The registry cannot be written; nothing of this version is left behind.
        """
        model_dir = self._dir(name, must_exist=False)
        source = Path(source_dir)
        self._check_source(source, model_dir)
        if promote:  # refused before the copy, not after it (promote checks again under the lock)
            require_active(model_dir, f"register and promote a version of {name}")
        remove_stale_staging(self.root)
        with staging_folder(self.root) as tmp:
            try:
                copy_model(source, tmp)
                created = _now()
                stamp = {"created_at": created, "source": str(source.resolve()), "note": note}
                (tmp / _STAMP_FILE).write_text(json.dumps(stamp), encoding="utf-8")
                version = self._place(model_dir, tmp, stamp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return self.promote(name, version, note=note) if promote else self.get(name, version)

    @staticmethod
    def _check_source(source: Path, model_dir: Path) -> None:
        if not source.is_dir():
            found = "a file" if source.exists() else "nothing"
            raise NotFound(f"{source}: expected a model folder to register; found {found} there")
        meta = source / "metadata.json"
        if not (meta.is_file() or (source / "config.json").is_file()):
            listing = sorted(p.name for p in source.iterdir())[:10]
            raise InvalidInput(
                f"{source} must hold metadata.json or config.json; found {listing or 'nothing'}"
            )
        if meta.is_file() and not isinstance(read_json(meta), dict):
            raise InvalidInput(f"{meta} must hold a JSON object; found something else")
        require_weights(source, str(source))
        if model_dir.resolve().is_relative_to(source.resolve()):
            raise InvalidInput(f"source_dir {source} must not contain the registry folder {model_dir}")

    def _place(self, model_dir: Path, tmp: Path, stamp: Mapping[str, str]) -> int:
        """Renames the copied folder ``tmp`` in as the next version and logs its register event; on failure
        renames it back, and removes the folder of the name if this was its first version."""
        made = not model_dir.is_dir()
        model_dir.mkdir(exist_ok=True)
        try:
            with self._locked(model_dir):
                history = read_history(model_dir)
                logged = [e.get("version") for e in history if e.get("event") == "register"]
                used = [*self._version_dirs(model_dir), *(v for v in logged if isinstance(v, int))]
                version = max(used, default=0) + 1
                target = model_dir / f"v{version:04d}"
                tmp.rename(target)
                try:
                    entry = {"ts": stamp["created_at"], "event": "register", "version": version}
                    append_event(model_dir, {**entry, "source": stamp["source"], "note": stamp["note"]})
                except BaseException:  # a version the history does not know would be half-made
                    target.rename(tmp)
                    raise
        except BaseException:
            if made:
                remove_if_unused(model_dir)
            raise
        return version

    def promote(
        self, name: str, version: int, *, note: str = "", if_active: int | Literal["any"] | None = "any"
    ) -> ModelVersion:
        """Makes ``version`` the active version of ``name``, atomically, and logs it.

        Args:
            name: The model name.
            version: The version to make active.
            note: Free text kept in the history and the alias.
            if_active: Promote only while this version (None: no version) is still the active one, so that
                a decision taken against it (the promotion gate) cannot overwrite a newer promotion.

        Raises:
            NotFound: Unknown name or version.
            InvalidInput: The version holds no safetensors weights (registered before they were required),
                or the ``active`` alias names no version (`registry_files.require_active`).
            Conflict: ``if_active`` is not the active version any more.
        """
        model_dir = self._dir(name)
        remove_stale_staging(self.root)
        with self._locked(model_dir):
            chosen = self.get(name, version)
            require_weights(chosen.path, f"version {chosen.version} of {name!r} ({chosen.path})")
            previous = require_active(model_dir, f"promote version {chosen.version} of {name}")
            if if_active not in ("any", previous):
                raise Conflict(f"expected version {if_active} of {name!r} to be active; found {previous}")
            alias = {"version": chosen.version, "promoted_at": _now(), "note": note}
            fd, tmp_name = tempfile.mkstemp(prefix=ALIAS_TEMP_PREFIX, dir=model_dir)
            tmp = Path(tmp_name)
            try:
                os.fchmod(fd, 0o644)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(alias, fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                tmp.replace(model_dir / "active")
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            entry = {"ts": alias["promoted_at"], "event": "promote", "version": chosen.version}
            append_event(model_dir, {**entry, "previous": previous, "note": note})
        return chosen

    def record(self, name: str, event: Mapping[str, object]) -> None:
        """Appends an event (e.g. a promotion-gate decision) to the history, adding ``ts`` if absent.

        Raises:
            NotFound: Unknown name.
            InvalidInput: The event is not JSON-serialisable.
        """
        model_dir = self._dir(name)
        remove_stale_staging(self.root)
        with self._locked(model_dir):
            append_event(model_dir, {"ts": _now(), **event})

    def history(self, name: str) -> list[dict[str, object]]:
        """Returns the history of ``name``, oldest first."""
        return read_history(self._dir(name))

    def active(self, name: str) -> ModelVersion:
        """Returns the active version of ``name``.

        Raises:
            NotFound: Unknown name, or no version has been promoted.
        """
        model_dir = self._dir(name)
        version, problem = read_active(model_dir)
        if problem is not None:  # promoting would be refused too: the alias itself needs repair
            raise NotFound(
                f"model {name!r} has no usable active version: {problem}; repair or remove the alias"
            )
        if version is None:
            known = list(self._version_dirs(model_dir))
            raise NotFound(f"model {name!r} has no active version; promote one of {known or 'none'} first")
        return self.get(name, version)

    def get(self, name: str, version: int) -> ModelVersion:
        """Returns one version of ``name``.

        Raises:
            InvalidInput: ``version`` is not a positive integer.
            NotFound: Unknown name or version.
        """
        model_dir = self._dir(name)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidInput(f"version must be a positive integer; got {version!r}")
        dirs = self._version_dirs(model_dir)
        if version not in dirs:
            raise NotFound(f"model {name!r} has no version {version}; available: {list(dirs) or 'none'}")
        return self._load(name, version, dirs[version])

    def versions(self, name: str) -> list[ModelVersion]:
        """Returns every version of ``name``, oldest first."""
        return [self._load(name, v, path) for v, path in self._version_dirs(self._dir(name)).items()]

    def names(self) -> list[str]:
        """Returns every model name in the registry, sorted."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME_RE.fullmatch(p.name))

    def delete(self, name: str, version: int) -> ModelVersion:
        """Deletes a version that is not active; returns it (its folder gone).

        Raises:
            Conflict: ``version`` is the active version.
            InvalidInput: The ``active`` alias names no version (`registry_files.require_active`).
            NotFound: Unknown name or version.
        """
        model_dir = self._dir(name)
        remove_stale_staging(self.root)
        with self._locked(model_dir):
            doomed = self.get(name, version)
            if require_active(model_dir, f"delete version {doomed.version} of {name}") == doomed.version:
                raise Conflict(f"version {version} of {name!r} is active; promote another before deleting it")
            trash = self._discard(model_dir, [doomed])
        shutil.rmtree(trash, ignore_errors=True)
        return doomed

    def prune(self, name: str, keep: int, *, dry_run: bool = False) -> list[ModelVersion]:
        """Deletes every version of ``name`` but the active one and the ``keep`` newest others.

        Returns:
            The versions deleted (with ``dry_run``, that would be), oldest first.

        Raises:
            InvalidInput: ``keep`` is not an integer >= 0, or the ``active`` alias names no version.
            NotFound: Unknown name.
        """
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise InvalidInput(f"keep: expected an integer >= 0; found {keep!r}")
        model_dir = self._dir(name)
        remove_stale_staging(self.root)
        with self._locked(model_dir):
            active = require_active(model_dir, f"prune {name}")
            others = [v for v in self._version_dirs(model_dir) if v != active]
            doomed = [self.get(name, v) for v in others[: max(len(others) - keep, 0)]]
            if dry_run or not doomed:
                return doomed
            trash = self._discard(model_dir, doomed)
        shutil.rmtree(trash, ignore_errors=True)
        return doomed

    @staticmethod
    def _discard(model_dir: Path, doomed: list[ModelVersion]) -> Path:
        """Renames each version into one hidden trash folder (readers of a version see it whole or not at
        all) and logs its delete; the caller holds the lock, and removes the trash after releasing it."""
        trash = Path(tempfile.mkdtemp(prefix=TRASH_PREFIX, dir=model_dir))
        for version in doomed:
            version.path.rename(trash / version.path.name)
            append_event(model_dir, {"ts": _now(), "event": "delete", "version": version.version})
        return trash

    def resolve(self, ref: str) -> Path:
        """Returns the folder for ``"name"`` (active), ``"name@active"`` or ``"name@3"``.

        Raises:
            InvalidInput: Malformed reference or name.
            NotFound: Unknown name or version, or nothing active.
        """
        name, sep, which = ref.partition("@")
        if not sep or which == "active":
            return self.active(name).path
        match = _VERSION_REF_RE.fullmatch(which)
        if match is None:
            raise InvalidInput(f"model reference must be 'name', 'name@active' or 'name@<n>'; got {ref!r}")
        return self.get(name, int(match.group(1))).path
