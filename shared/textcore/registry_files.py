"""The model registry's files on disk (`textcore.registry` keeps the rules): JSON read without ever raising
on bad bytes, the append-only ``history.jsonl`` log, and checking and copying a model folder in.

A history line torn by a crash (no newline, perhaps cut inside a character) is skipped and logged when read,
and the next event is written on a line of its own, so one crash loses at most the event it interrupted.
A register stages its copy in a hidden ``.incoming-*`` folder of the registry root, locked (``flock``) while
the register runs; one a killed register left is removed by a later writer once it is an hour old and no
register holds its lock. A promote or delete that crashed leaves its temporary inside the name's folder (an
``.active-*`` file, a ``.deleting-*`` folder holding a whole version); the next writer of that name, holding
its lock, removes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from textcore.errors import InvalidInput

log = logging.getLogger("textcore.registry")

HISTORY_FILE = "history.jsonl"
WEIGHTS = "*.safetensors"  # model.safetensors, its shards, adapter_model.safetensors: what the loaders read
STAGING_PREFIX = ".incoming-"
ALIAS_TEMP_PREFIX = ".active-"  # a new alias, written then renamed over ``active`` under the name's lock
TRASH_PREFIX = ".deleting-"  # a deleted version, renamed here under the name's lock, removed after it
STALE_STAGING_S = 3600.0  # a staging folder unchanged this long, and unlocked, was left by a killed register


def loads(text: str | bytes) -> object:
    """The JSON value of `text`, or None when it is not JSON (or bytes that are not UTF-8)."""
    try:
        return json.loads(text)
    except ValueError:  # UnicodeDecodeError included: bytes that are not text read as no JSON
        return None


def read_json(path: Path) -> object:
    """The JSON value of the file at `path`, or None when it is no file or holds no JSON."""
    return loads(path.read_bytes()) if path.is_file() else None


def read_active(model_dir: Path) -> tuple[int | None, str | None]:
    """The version the ``active`` alias of a name names, and if it names none, why: None when there is no
    alias, else the path and what is wrong with it (a folder, unreadable, no JSON object with a version)."""
    path = model_dir / "active"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except IsADirectoryError:
        return None, f"{path}: expected a file; found a folder"
    except OSError as exc:  # permission denied, a name that is a file (not a directory), ...
        return None, f"{path}: could not be read: {exc.strerror or exc}"
    data = loads(raw)
    version = data.get("version") if isinstance(data, dict) else None
    if isinstance(version, int) and not isinstance(version, bool):
        return version, None
    found = raw[:80].decode("utf-8", "replace")
    return None, f"{path}: expected a JSON object with an integer version; found {found!r}"


def require_active(model_dir: Path, doing: str) -> int | None:
    """The version the ``active`` alias of a name names, None when there is no alias; a writer's check.

    An alias that names no version (`read_active`'s reason) may still mean one (a torn or hand-edited file,
    one we may not read): `doing` (e.g. ``"delete version 2 of clf"``) is refused rather than taking it for
    "nothing active" and deleting or writing over the version it meant.

    Raises:
        InvalidInput: The alias names no version, naming its path and what is wrong with it.
    """
    version, problem = read_active(model_dir)
    if problem is not None:
        where = f"in the registry {model_dir.parent}: {problem}"
        raise InvalidInput(f"could not {doing} {where}; repair or remove the alias first")
    return version


def append_event(model_dir: Path, entry: Mapping[str, object]) -> None:
    """Appends one event to the history, flushed to disk; the caller holds the name's lock."""
    try:
        line = json.dumps(entry, ensure_ascii=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"history events must be JSON-serialisable; got {entry!r} ({exc})") from exc
    with (model_dir / HISTORY_FILE).open("ab+") as fh:
        if fh.seek(0, os.SEEK_END) > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":  # the last line was torn by a crash: keep this event off it
                line = "\n" + line
        fh.write(line.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def read_history(model_dir: Path) -> list[dict[str, object]]:
    """The events of the history, oldest first; a line that is not a JSON object is skipped and logged."""
    path = model_dir / HISTORY_FILE
    events = []
    for number, line in enumerate(path.read_bytes().splitlines() if path.is_file() else [], 1):
        event = loads(line)  # None for a line torn by a crash, even one cut inside a character
        if isinstance(event, dict):
            events.append(event)
        elif line.strip():
            log.warning("%s: skipped line %d, which is not a JSON object (torn by a crash?)", path, number)
    return events


def require_weights(folder: Path, what: str) -> None:
    """Refuses a folder with no safetensors weights: every loader of the project reads those only."""
    if not any(p.is_file() for p in folder.glob(WEIGHTS)):
        listing = sorted(p.name for p in folder.iterdir())[:10]
        raise InvalidInput(
            f"{what} must hold safetensors weights (model.safetensors, adapter_model.safetensors, ...; "
            f"pickle weights such as pytorch_model.bin are refused); found {listing or 'nothing'}"
        )


def copy_model(source: Path, target: Path) -> None:
    """Copies a model folder, turning a file that cannot be copied into one InvalidInput naming it."""
    try:
        shutil.copytree(source, target, dirs_exist_ok=True)
    except shutil.Error as exc:  # one (source, target, why) per file that failed
        failures = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
        if not failures:
            raise InvalidInput(f"could not copy the model folder {source}: {exc}") from exc
        path, _, why = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise InvalidInput(f"could not copy {path} from the model folder {source}: {why}{more}") from exc


def remove_if_unused(model_dir: Path) -> None:
    """Removes the folder of a name whose first register failed, if it holds nothing but the lock file."""
    with contextlib.suppress(OSError):
        if {p.name for p in model_dir.iterdir()} <= {".lock"}:
            (model_dir / ".lock").unlink(missing_ok=True)
            model_dir.rmdir()


@contextlib.contextmanager
def staging_folder(root: Path) -> Iterator[Path]:
    """A new hidden folder in `root` to stage a copy in, locked until the caller is done with it.

    The caller renames it into place or removes it; the lock tells `remove_stale_staging` that it is in use
    however old its time is (a large model may take long to copy), and it ends with the process.
    """
    path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def remove_stale_staging(root: Path, older_than_s: float = STALE_STAGING_S) -> list[Path]:
    """Removes the staging folders in `root` that killed registers left: unchanged for `older_than_s` and
    locked by no register. Never raises: one that cannot be removed now is tried again by the next writer.

    Returns:
        The folders removed.
    """
    removed = []
    with contextlib.suppress(OSError):
        candidates = [p for p in root.iterdir() if p.name.startswith(STAGING_PREFIX)]
        for path in candidates:
            if _remove_if_abandoned(path, time.time() - older_than_s):
                log.warning("removed %s, a copy left by a register that did not finish", path)
                removed.append(path)
    return removed


def _remove_if_abandoned(path: Path, cutoff: float) -> bool:
    try:
        # O_NOFOLLOW: a link named like a staging folder is not followed (nor removed)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:  # gone already, a file, a link, or not ours to open
        return False
    try:
        if os.fstat(fd).st_mtime > cutoff:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a register is writing into it right now
            return False
        if path.lstat().st_ino != os.fstat(fd).st_ino:
            return False  # renamed into place before the lock was ours; the name is another folder now
        shutil.rmtree(path)
        return True
    except OSError as exc:
        log.warning("could not remove %s, a copy left by a register that did not finish: %s", path, exc)
        return False
    finally:
        os.close(fd)


def remove_leftovers(model_dir: Path) -> list[Path]:
    """Removes what a crashed promote or delete of this name left in its folder: ``.active-*`` files and
    ``.deleting-*`` folders. The caller holds the name's lock, so no promote is writing an alias temp now; a
    delete removes its trash after releasing the lock, and removing it twice at once is harmless. Links are
    left alone. Never raises: what cannot be removed now is tried again by the next writer.

    Returns:
        The paths removed.
    """
    removed = []
    with contextlib.suppress(OSError):
        for path in list(model_dir.iterdir()):
            if path.is_symlink():
                continue
            if path.name.startswith(ALIAS_TEMP_PREFIX) and path.is_file():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            elif path.name.startswith(TRASH_PREFIX) and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                continue
            if path.exists():
                log.warning("could not remove %s, left by a promote or delete that did not finish", path)
            else:
                log.warning("removed %s, left by a promote or delete that did not finish", path)
                removed.append(path)
    return removed
