"""One training run at a time into an output folder: a run holds an OS lock (`flock`) on a hidden
``.NAME.lock`` file beside its folder from before it looks into the folder until it ends, and a second run
into that folder is refused at once, naming the process that holds it.

The operating system releases the lock when the process ends, however it ends (SIGKILL, the OOM killer), so
a killed run never blocks the next one. The file holds the id of the process holding the lock, for that
message; a run removes it as it ends, while it still holds the lock, so no file stays beside the model (a
run killed hard leaves it: the next run takes it over). A run that may not write the folder's parent (a
mounted volume given as ``--output``) locks the folder itself; its refusal then names no process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from textcore.errors import InvalidInput

LOCK_FILE = ".{}.lock"  # beside the folder, which is renamed while an earlier model is set aside
HOLDER_WAIT_S = 1.0  # how long a refused run waits for the holder to write its id (it does so at once)


@contextmanager
def holding_output(folder: Path, output: Path) -> Iterator[None]:
    """Hold the lock of `folder` (the resolved ``--output``) around the body: the whole run.

    Under `torchrun` only the main process takes it; the other ranks follow what it did. A parent folder
    the lock needs is made (and removed again at the end if the run left it empty).

    Raises:
        InvalidInput: Another run holds the lock, naming `output` and that run's process id; nothing was
            touched.
    """
    if os.environ.get("RANK", "0") != "0" or not folder.name:
        yield
        return
    lock = folder.with_name(LOCK_FILE.format(folder.name))
    made: list[Path] = []
    fd = None
    try:
        fd = _acquire(lock, folder, output, made)
        yield
    finally:
        if fd is not None:
            _release(lock, fd)
        for path in reversed(made):  # deepest last made: removed first, where the run left them empty
            with contextlib.suppress(OSError):
                path.rmdir()


def _acquire(lock: Path, folder: Path, output: Path, made: list[Path]) -> int | None:
    """The descriptor holding the lock on `lock` (or on `folder` where `lock` cannot be made); None where
    neither can be opened (the run cannot write there either, and says so itself)."""
    while True:
        fd = _open(lock, made)
        if fd is None:
            return _lock_folder(folder, output)
        _lock(fd, output, lock)
        if _names(lock, fd):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)  # the run before this one removed that file as it ended: lock the one there now


def _open(lock: Path, made: list[Path]) -> int | None:
    for _ in range(3):  # a parent made here may be removed by a run ending at that moment: make it again
        try:
            return os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            if not _make_parents(lock.parent, made):
                return None
        except OSError:  # a parent this user may not write, a file where a folder belongs
            return None
    return None


def _make_parents(folder: Path, made: list[Path]) -> bool:
    """Make `folder` and its missing parents, noting each made in `made`; False where one cannot be."""
    for path in reversed([p for p in (folder, *folder.parents) if not p.exists()]):
        try:
            path.mkdir()
        except FileExistsError:  # made by another run at this moment, or a file (the next mkdir fails)
            continue
        except OSError:  # a file where a folder belongs, a folder this user may not write
            return False
        made.append(path)
    return folder.is_dir()


def _lock_folder(folder: Path, output: Path) -> int | None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    _lock(fd, output, None)
    return fd


def _lock(fd: int, output: Path, lock: Path | None) -> None:
    """Take the lock on `fd`, or close it and refuse the run naming the process holding it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _holder(fd) if lock is not None else None
        os.close(fd)
        other = f"another run (process {pid})" if pid else "another run"
        raise InvalidInput(
            f"--output {output}: {other} is training into it; wait for it to end or choose another folder"
        ) from None


def _holder(fd: int) -> int | None:
    """The id of the process holding the lock, as it wrote it into the file (at once after locking)."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit() and process_running(int(text)):  # not the id a run killed hard left in the file
            return int(text)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)


def process_running(pid: int) -> bool:
    """Whether a process with id `pid` runs on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _names(lock: Path, fd: int) -> bool:
    """Whether `lock` still names the file locked through `fd` (the run that held it may have removed it)."""
    try:
        named, held = lock.lstat(), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _release(lock: Path, fd: int) -> None:
    """Remove the lock file while holding it (a run about to lock it then sees it gone and makes a new one),
    then let go. `fd` may be the folder's own (`_lock_folder`): `lock` then names another file, or none."""
    try:
        if _names(lock, fd):
            lock.unlink()
    except OSError:  # left beside the folder: the next run takes it over
        pass
    finally:
        os.close(fd)
