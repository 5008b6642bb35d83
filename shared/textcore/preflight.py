"""Checks before a training run loads any model: the output folder is one the run may write, and the data
files read as the task will read them, so that a bad file fails in a fraction of a second.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from textcore.console import say
from textcore.errors import InvalidInput
from textcore.run_lock import holding_output, process_running

# 128 + the signal's number, the code shells and Kubernetes report for a process SIGTERM ended (Ctrl-C's is
# 130, as typer gives it)
EXIT_SIGTERM = 128 + signal.SIGTERM
ASIDE_PREFIX = ".{}.earlier-"  # then the id of the process that set the earlier model aside
INTERRUPTED = ".{}.interrupted"  # the partial run of a stopped run that replaced an earlier model


def prepare_output(output: Path, resume: bool = False) -> None:
    """Make `output` ready for a training run: a new folder, an empty one, or the folder of an earlier run of
    this project (a model, or a run cut short), whose contents the new run replaces whole, so that nothing of
    the earlier model (a classifier's head and labels beside a new encoder, its curves) mixes with the new
    one. `resume` keeps them, to continue an interrupted run there. A command that can still fail after this
    (it reads its data next) uses `replacing_output`, which removes the earlier model only once it succeeds.

    Only the main process looks into the folder: under `torchrun` the other ranks may start after it has
    begun writing.

    Raises:
        InvalidInput: If `output` is a file, or a folder holding files no run of this project wrote, or
            `resume` is asked of a finished model that has no checkpoint left to continue.
    """
    if _holds_earlier_model(output, resume):
        say(f"replacing the earlier model in {output}")
        _empty(output)


@contextmanager
def replacing_output(
    output: Path,
    resume: bool = False,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    *,
    resumable: bool = False,
) -> Iterator[None]:
    """`prepare_output` around the whole of a training command: the earlier model in `output` is set aside
    (renamed to a hidden sibling folder) rather than removed, put back when the command fails or is stopped,
    and removed once it has succeeded; so a misspelt column, a missing file or an interrupted run leaves the
    earlier model as it was. What a run killed hard left set aside is settled first (`settle_stale_asides`).

    With `resumable` (a command that takes `--resume`), a run stopped (Ctrl-C, SIGTERM) after writing a
    checkpoint keeps its partial run beside the earlier model as `.NAME.interrupted`: `resume` continues it
    (the earlier model set aside again until it succeeds), a run without `resume` discards it. A run
    stopped by SIGTERM then ends by that signal (exit code 143 in a shell, `EXIT_SIGTERM`), one stopped by
    Ctrl-C with exit code 130.

    The run holds the folder's lock throughout (`textcore.run_lock`), so a second run into it is refused.

    Args:
        output: The folder the model is written to.
        resume: Continue an interrupted run in `output`, or the one kept beside it: nothing else is set aside.
        inputs: What the run reads (data files, a base model or teacher folder; names such as ``minilm``
            are passed over): none may lie inside `output`, which the run empties.
        resumable: Keep the partial run of a stopped run for `resume`, as above.

    Raises:
        InvalidInput: As `prepare_output`, an input lies inside `output`, or another run is training into
            it (it holds the folder's lock, `textcore.run_lock`); before anything is moved.
    """
    for given in (item for item in inputs if item):
        path = Path(given)
        if path.exists() and output.exists() and path.resolve().is_relative_to(output.resolve()):
            raise InvalidInput(
                f"--output {output}: the run would empty it, yet it reads {given} from it; "
                "choose another output folder"
            )
    folder = output.resolve()  # `--output .` or `..` names no folder to set aside beside; a link its target
    try:
        with holding_output(folder, output), _sigterm_stops(), _replacing(output, folder, resume, resumable):
            yield
    except Terminated:
        _pass_on_sigterm()
        raise SystemExit(EXIT_SIGTERM) from None


@contextmanager
def _replacing(output: Path, folder: Path, resume: bool, resumable: bool) -> Iterator[None]:
    """`replacing_output` once the run holds the folder's lock."""
    _refuse_a_running_run(folder, output)  # a run of an earlier version, which took no lock
    settle_stale_asides(folder, restore=not resume)
    aside = folder.with_name(f"{ASIDE_PREFIX.format(folder.name)}{os.getpid()}")
    kept = folder.with_name(INTERRUPTED.format(folder.name))
    main = os.environ.get("RANK", "0") == "0"  # torchrun's other ranks follow what its main process did
    if main and resume and kept.is_dir():
        replacing = _resume_kept_run(output, folder, kept, aside)
    else:
        replacing = _holds_earlier_model(output, resume)
        if main and kept.is_dir():
            shutil.rmtree(kept, ignore_errors=True)
            say(f"discarded {kept.name}, the partial run a stopped run kept (--resume continues it)")
        # the current folder, or one above it: the run, writing through a relative path, follows the rename
        if replacing and (Path.cwd().is_relative_to(folder) or not _set_aside(folder, aside)):
            say(f"replacing the earlier model in {output}")
            _empty(output)
            yield
            return
        if replacing:
            say(f"replacing the earlier model in {output} (kept as {aside.name} until this run succeeds)")
    if not replacing:
        yield
        settle_stale_asides(folder, restore=False)  # a resumed run is complete now: its aside goes
        return
    try:
        yield
    except BaseException as exc:
        if resumable and isinstance(exc, KeyboardInterrupt) and _has_checkpoint(folder):
            shutil.rmtree(kept, ignore_errors=True)
            folder.rename(kept)
            aside.rename(folder)
            say(
                f"the run was stopped: the earlier model is back in {output}, the partial run kept as "
                f"{kept.name}; the same command with --resume continues it"
            )
            raise
        shutil.rmtree(folder, ignore_errors=True)
        aside.rename(folder)
        say(f"the run did not finish: the earlier model is back in {output}")
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _resume_kept_run(output: Path, folder: Path, kept: Path, aside: Path) -> bool:
    """Move the partial run a stopped run kept (`kept`) into `folder` to be resumed, setting the earlier
    model there aside as `aside`; whether one was (False: `folder` held none)."""
    earlier = _holds_earlier_model(output, resume=False)
    if Path.cwd().is_relative_to(folder) or (earlier and not _set_aside(folder, aside)):
        raise InvalidInput(
            f"--resume: cannot set the earlier model in {output} aside to continue the run kept as "
            f"{kept.name}"
        )
    if folder.is_dir():
        folder.rmdir()  # made anew by `_set_aside`, or an empty folder
    kept.rename(folder)
    held = f" (the earlier model kept as {aside.name} until it succeeds)" if earlier else ""
    say(f"continuing the partial run kept as {kept.name} in {output}{held}")
    return earlier


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt: the same stop, then the signal passed on."""


@contextmanager
def _sigterm_stops() -> Iterator[None]:
    """SIGTERM (`kill`, a service manager stopping the run) stops the run as Ctrl-C does, so that it puts the
    earlier model back; it ended the process at once, leaving the partial run in its place."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _pass_on_sigterm() -> None:
    """End the stopped run by SIGTERM itself, where nothing else handles it: the code shells and Kubernetes
    report (143), and a clean stop to systemd (an exit code of 143 is a failure there). As a container's
    first process, which the signal does not end, the run exits with `EXIT_SIGTERM` instead."""
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.raise_signal(signal.SIGTERM)


def _set_aside(folder: Path, aside: Path) -> bool:
    """Rename `folder` to `aside` and make it anew; False, with nothing moved, where it cannot be (a mount
    point, a parent folder that cannot be written: the run replaces the earlier model in place, as before)."""
    try:
        folder.rename(aside)
        folder.mkdir()
    except OSError:
        if aside.is_dir() and not folder.exists():
            aside.rename(folder)
        return False
    return True


def settle_stale_asides(output: Path, restore: bool = True) -> None:
    """Settle the earlier models that runs into `output` set aside and could not put back, being killed
    (SIGKILL, the OOM killer, a power cut): each is put back in place of the partial run it left when
    `output` holds no complete model (no metadata.json, written last) but an empty folder or a partial run,
    and `restore` is set (a resumed run keeps its partial run); removed when `output` holds a complete
    model, newer than it. The asides of a run still alive are left alone, and so is everything under
    torchrun's worker ranks.
    """
    if os.environ.get("RANK", "0") != "0" or not output.parent.is_dir() or output.is_file():
        return
    from textcore.artifacts import METADATA_FILE, RUN_DIR  # noqa: PLC0415  (numpy: not for --help)

    for aside in _stale_asides(output):
        if (output / METADATA_FILE).is_file():
            shutil.rmtree(aside, ignore_errors=True)
            say(f"removed {aside.name}: {output} holds a newer model than the one a killed run set aside")
        elif restore and (not output.exists() or (output / RUN_DIR).is_dir() or not any(output.iterdir())):
            shutil.rmtree(output, ignore_errors=True)
            aside.rename(output)
            say(
                f"a run into {output} was killed before it finished: put back the earlier model it had set "
                f"aside ({aside.name}) in place of its partial run"
            )


def _refuse_a_running_run(folder: Path, output: Path) -> None:
    """Refuse `output` while another run trains into it (its earlier model set aside by a live process): the
    two would write one folder, and each set the other's partial run aside as the earlier model."""
    if os.environ.get("RANK", "0") != "0":  # torchrun's main process has set aside; the ranks follow it
        return
    for aside, pid in _asides(folder):
        if _is_running(pid):
            raise InvalidInput(
                f"--output {output}: another run (process {pid}) is training into it, its earlier model set "
                f"aside as {aside.name}; wait for it to end or choose another folder (remove {aside.name} "
                "if no such run goes on)"
            )


def _stale_asides(output: Path) -> list[Path]:
    """The folders set aside for `output` by processes no longer running, oldest first."""
    return [aside for aside, pid in _asides(output) if not _is_running(pid)]


def _asides(output: Path) -> list[tuple[Path, int]]:
    """The folders set aside for `output` (`.NAME.earlier-PID`) and the ids of the processes that did it,
    oldest first."""
    prefix = ASIDE_PREFIX.format(output.name)
    try:
        entries = list(output.parent.iterdir())
    except OSError:  # a parent folder this user may enter but not list: nothing to settle that can be seen
        return []
    found = []
    for entry in entries:
        pid = entry.name.removeprefix(prefix)
        if entry.name.startswith(prefix) and pid.isdigit() and entry.is_dir():
            found.append((entry, int(pid)))
    return sorted(found, key=lambda item: item[0].stat().st_mtime)


def _is_running(pid: int) -> bool:
    # this run has set nothing aside yet when it finds its own id: an earlier process had it
    return pid != os.getpid() and process_running(pid)


def _holds_earlier_model(output: Path, resume: bool) -> bool:
    """Whether the run replaces an earlier model in `output`; refuses a folder it may not write."""
    if output.exists() and not output.is_dir():
        raise InvalidInput(f"--output {output}: expected a folder to write the model to; found a file")
    nearest = next((folder for folder in output.absolute().parents if folder.exists()), None)
    if nearest is not None and not nearest.is_dir():
        raise InvalidInput(f"--output {output}: expected a folder to write the model to; {nearest} is a file")
    if resume:
        _require_checkpoint_to_resume(output)
    if resume or os.environ.get("RANK", "0") != "0" or not output.is_dir():
        return False
    entries = sorted(output.iterdir())
    if not entries:
        return False
    from textcore.artifacts import METADATA_FILE, RUN_DIR  # noqa: PLC0415  (numpy: not for --help)

    if not ((output / METADATA_FILE).is_file() or (output / RUN_DIR).is_dir()):
        names = [entry.name for entry in entries]
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise InvalidInput(
            f"--output {output}: expected a new or empty folder, or an earlier model's; it holds {shown}, "
            "which no training run wrote. Choose another folder"
        )
    return True


def _require_checkpoint_to_resume(output: Path) -> None:
    """Refuse `--resume` into a finished model's folder: a run that succeeded removed its checkpoint, so
    the run would start from the beginning and write over the model (a folder with no model yet, or a run
    cut short before its first checkpoint, has nothing to lose: that run starts afresh)."""
    from textcore.artifacts import METADATA_FILE  # noqa: PLC0415  (numpy: not for --help)

    if not (output / METADATA_FILE).is_file() or _has_checkpoint(output):
        return
    raise InvalidInput(
        f"--resume: {output} holds a finished model and no checkpoint to resume; drop --resume to train "
        "again (replacing it)"
    )


def _has_checkpoint(output: Path) -> bool:
    """Whether `output` holds a checkpoint of a run or of its refit, or the previous one kept while a new
    one was renamed in (textcore.training.checkpoint's CHECKPOINT_DIR and OLD_CHECKPOINT_DIR; that module
    imports torch)."""
    from textcore.artifacts import RUN_DIR  # noqa: PLC0415  (numpy: not for --help)

    names = ("checkpoint", ".checkpoint.old", "*/checkpoint", "*/.checkpoint.old")
    return any(path.is_dir() for name in names for path in (output / RUN_DIR).glob(name))


def _empty(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


# what the label column holds, by task (mlm reads no label column)
LABEL_COLUMN_HOLDS = {
    "classification": "labels",
    "setfit": "labels",
    "token-classification": "tags",
    "cross-encoder": "relevance scores",
    "embedding": "positives",
}


def require_distinct_columns(
    text_column: str, label_column: str, task: str | None = "classification"
) -> None:
    """Refuse a label column that is the text column: every text would be its own label (one class per
    text), and training or scoring would run on, meaning nothing. A task that reads no label column (mlm)
    passes; any other task (or none known) is taken to read labels.

    Raises:
        InvalidInput: If `label_column` is `text_column`, for a task that reads a label column.
    """
    if task == "mlm" or text_column != label_column:
        return
    holds = LABEL_COLUMN_HOLDS.get(task or "", "labels")
    raise InvalidInput(
        f"--label-column {label_column!r} is also the --text-column: the {holds} would be the texts "
        f"themselves; name the column that holds the {holds}"
    )


def check_training_data(
    task: str,
    path: Path,
    columns: tuple[str, str, str | None, str | None],
    multi_label: bool,
    weight_column: str | None = None,
    *,
    label_sets: bool = False,
) -> None:
    """Read the data file as the task will; `multi_label` also stands for "skip the class checks";
    `label_sets`: the rows hold sets of labels (multi-label classification), where an empty cell is a row
    with none of them."""
    if weight_column and task != "classification":
        raise InvalidInput(f"--weight-column: row weights apply to --task classification only; found {task}")
    from textcore.data import read_corpus, read_labelled  # noqa: PLC0415
    from textcore.labelled import require_classes  # noqa: PLC0415
    from textcore.pairs import read_pairs, read_scored_pairs, require_relevance_mix  # noqa: PLC0415

    text_column, label_column, negative, passage = columns
    if task == "mlm":  # unlabelled: only the text column (or a .txt file, one text per line)
        read_corpus(path, text_column)
        return
    if task == "token-classification":
        from textcore.bio import read_tagged, require_entities  # noqa: PLC0415

        sentences = read_tagged(path, text_column, label_column)
        if not multi_label:
            require_entities(sentences, str(path))
        return
    if task == "cross-encoder":
        if not passage:
            raise InvalidInput("--task cross-encoder: expected --passage-column naming the passage column")
        pairs = read_scored_pairs(path, text_column, passage, label_column)
        if not multi_label:
            require_relevance_mix(pairs, str(path))
        return
    if task == "embedding":
        read_pairs(path, text_column, label_column, negative)
        return
    data = read_labelled(path, text_column, label_column, weight_column, multi_label=label_sets)
    if not multi_label:
        require_classes(data, str(path))
    if task == "setfit" and not multi_label:
        single = [label for label, n in data.label_counts().items() if n < 2]
        if single:
            raise InvalidInput(
                f"{path}: task setfit expects at least 2 examples of every class; found 1 of {single[:5]}"
            )
