"""Tests for textcore.registry: versioned model folders, the active alias, history and the watcher."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest

from textcore.errors import Conflict, InvalidInput, ModelNotReady, NotFound
from textcore.registry import ActiveModelWatcher, ModelRegistry, ModelVersion


def make_model(parent: Path, tag: str, *, accuracy: float = 0.9) -> Path:
    """Creates a small fake model folder with metadata, a weights file and a nested tokenizer file."""
    folder = parent / f"src-{tag}"
    (folder / "tokenizer").mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps({"tag": tag, "accuracy": accuracy}), encoding="utf-8")
    (folder / "model.safetensors").write_bytes(tag.encode() * 100)
    (folder / "tokenizer" / "vocab.txt").write_text(f"[PAD]\n{tag}\n", encoding="utf-8")
    return folder


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def test_register_assigns_increasing_versions_and_copies_files(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    first = registry.register("sentiment", make_model(tmp_path, "a"))
    second = registry.register("sentiment", make_model(tmp_path, "b"), note="retrained")

    assert (first.version, second.version) == (1, 2)
    assert first.path == registry.root / "sentiment" / "v0001"
    assert (second.path / "model.safetensors").read_bytes() == b"b" * 100
    assert (second.path / "tokenizer" / "vocab.txt").read_text(encoding="utf-8") == "[PAD]\nb\n"
    assert second.metadata == {"tag": "b", "accuracy": 0.9}
    assert datetime.fromisoformat(second.created_at).utcoffset() is not None
    assert [v.version for v in registry.versions("sentiment")] == [1, 2]
    assert registry.get("sentiment", 2) == second
    assert registry.names() == ["sentiment"]
    assert sorted(p.name for p in registry.root.iterdir()) == ["sentiment"]  # no .incoming-* left
    leftovers = [p.name for p in (registry.root / "sentiment").iterdir() if p.name.startswith(".incoming")]
    assert leftovers == []


def test_register_accepts_config_json_and_reads_empty_metadata(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    src = tmp_path / "hf"
    src.mkdir()
    (src / "config.json").write_text("{}", encoding="utf-8")
    (src / "model.safetensors").write_bytes(b"weights")
    assert registry.register("hf-model", src).metadata == {}


def test_promote_switches_active_and_resolve_handles_every_form(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    v1 = registry.register("clf", make_model(tmp_path, "a"), promote=True)
    v2 = registry.register("clf", make_model(tmp_path, "b"))
    assert registry.active("clf") == v1

    assert registry.promote("clf", 2, note="better") == v2
    assert registry.active("clf") == v2
    alias = json.loads((registry.root / "clf" / "active").read_text(encoding="utf-8"))
    assert alias["version"] == 2
    assert alias["note"] == "better"
    assert "promoted_at" in alias
    assert registry.resolve("clf") == v2.path
    assert registry.resolve("clf@active") == v2.path
    assert registry.resolve("clf@1") == v1.path
    assert registry.resolve("clf@v1") == v1.path
    assert not [p for p in (registry.root / "clf").iterdir() if p.name.startswith(".active-")]


def test_failed_promote_leaves_the_old_alias_untouched(
    registry: ModelRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.register("clf", make_model(tmp_path, "a"), promote=True)
    registry.register("clf", make_model(tmp_path, "b"))

    def broken_replace(self: Path, target: Path) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        registry.promote("clf", 2)
    monkeypatch.undo()

    assert registry.active("clf").version == 1
    assert not [p for p in (registry.root / "clf").iterdir() if p.name.startswith(".active-")]


def test_active_on_unpromoted_or_unknown_name_is_not_found(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.register("clf", make_model(tmp_path, "a"))
    with pytest.raises(NotFound, match="no active version"):
        registry.active("clf")
    with pytest.raises(NotFound, match="no model named 'other'"):
        registry.active("other")
    with pytest.raises(NotFound, match="no version 7"):
        registry.resolve("clf@7")
    with pytest.raises(NotFound, match="no active version"):
        registry.resolve("clf")


@pytest.mark.parametrize("name", ["", "Upper", "../escape", "-lead", ".hidden", "a" * 65, "sp ace", "x\n"])
def test_bad_name_is_invalid_input(registry: ModelRegistry, tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput, match="model name must match"):
        registry.register(name, make_model(tmp_path, "a"))
    assert not list(registry.root.iterdir())


def test_bad_sources_and_refs_are_rejected(registry: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="found nothing"):
        registry.register("clf", tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "weights.bin").write_bytes(b"x")
    with pytest.raises(InvalidInput, match=r"metadata.json or config.json; found \['weights.bin'\]"):
        registry.register("clf", empty)
    (empty / "metadata.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(InvalidInput, match="JSON object"):
        registry.register("clf", empty)
    registry.register("clf", make_model(tmp_path, "a"))
    with pytest.raises(InvalidInput, match="model reference"):
        registry.resolve("clf@latest")
    with pytest.raises(InvalidInput, match="positive integer"):
        registry.get("clf", 0)


def test_a_model_folder_without_safetensors_weights_is_refused_and_never_promoted(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    source = make_model(tmp_path, "a")
    (source / "model.safetensors").rename(source / "pytorch_model.bin")  # pickle: no loader reads it
    with pytest.raises(InvalidInput, match=r"must hold safetensors weights .*found \['metadata.json', 'pyt"):
        registry.register("clf", source, promote=True)
    assert list(registry.root.iterdir()) == []  # refused before copying: not even the name's folder
    (source / "pytorch_model.bin").rename(source / "adapter_model.safetensors")  # a peft adapter counts
    assert registry.register("clf", source).version == 1

    older = registry.register("clf", make_model(tmp_path, "b"))  # as if registered before the check
    (older.path / "model.safetensors").unlink()
    with pytest.raises(InvalidInput, match=r"version 2 of 'clf' .* must hold safetensors weights"):
        registry.promote("clf", 2)
    with pytest.raises(NotFound, match="no active version"):
        registry.active("clf")
    assert [e["event"] for e in registry.history("clf")] == ["register", "register"]


@pytest.mark.parametrize("failure", ["file that cannot be copied", "no weights", "metadata not an object"])
def test_a_failed_first_register_of_a_name_leaves_nothing_behind(
    registry: ModelRegistry, tmp_path: Path, failure: str
) -> None:
    source = make_model(tmp_path, "a")
    if failure == "file that cannot be copied":
        (source / "model-2.safetensors").symlink_to(tmp_path / "blob-never-written")
    elif failure == "no weights":
        (source / "model.safetensors").unlink()
    else:
        (source / "metadata.json").write_text("[]", encoding="utf-8")
    with pytest.raises(InvalidInput):
        registry.register("clf", source)
    assert list(registry.root.iterdir()) == []
    assert registry.names() == []
    with pytest.raises(NotFound, match="no model named 'clf'"):
        registry.versions("clf")


def test_a_register_whose_event_cannot_be_logged_leaves_no_version_behind(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    registry.register("clf", make_model(tmp_path, "a"))
    history = registry.root / "clf" / "history.jsonl"
    history.unlink()
    history.mkdir()  # appending to it fails after the copy was renamed into place
    with pytest.raises(IsADirectoryError):
        registry.register("clf", make_model(tmp_path, "b"))
    assert [v.version for v in registry.versions("clf")] == [1]
    assert sorted(p.name for p in registry.root.iterdir()) == ["clf"]
    assert sorted(p.name for p in (registry.root / "clf").iterdir()) == [".lock", "history.jsonl", "v0001"]


def test_a_torn_history_line_is_skipped_and_logged_and_the_next_event_kept(
    registry: ModelRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry.register("clf", make_model(tmp_path, "a"))
    history = registry.root / "clf" / "history.jsonl"
    with history.open("ab") as fh:  # a crash in the middle of an append: no newline after it
        fh.write(b'{"ts": "2026-01-01T00:00:00Z", "event": "gate", "cand')
    registry.promote("clf", 1)
    registry.register("clf", make_model(tmp_path, "b"))
    registry.record("clf", {"event": "note"})

    caplog.clear()
    with caplog.at_level("WARNING", logger="textcore.registry"):
        events = registry.history("clf")
    assert [(e["event"], e.get("version")) for e in events] == [
        ("register", 1),
        ("promote", 1),
        ("register", 2),
        ("note", None),
    ]
    assert history.read_bytes().splitlines()[1] == b'{"ts": "2026-01-01T00:00:00Z", "event": "gate", "cand'
    assert [r.getMessage() for r in caplog.records] == [
        f"{history}: skipped line 2, which is not a JSON object (torn by a crash?)"
    ]


def test_delete_refuses_the_active_version_and_never_reuses_numbers(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    registry.register("clf", make_model(tmp_path, "a"), promote=True)
    v2 = registry.register("clf", make_model(tmp_path, "b"))
    with pytest.raises(Conflict, match="is active"):
        registry.delete("clf", 1)
    assert registry.get("clf", 1).path.is_dir()

    registry.delete("clf", 2)
    assert not v2.path.exists()
    assert [v.version for v in registry.versions("clf")] == [1]
    with pytest.raises(NotFound):
        registry.delete("clf", 2)
    assert registry.register("clf", make_model(tmp_path, "c")).version == 3


def test_history_records_registrations_promotions_and_custom_events(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    registry.register("clf", make_model(tmp_path, "a"), promote=True, note="baseline")
    registry.register("clf", make_model(tmp_path, "b"))
    gate = {"event": "gate", "candidate": 2, "decision": "reject", "candidate_f1": 0.81, "active_f1": 0.84}
    registry.record("clf", gate)

    events = registry.history("clf")
    assert [e["event"] for e in events] == ["register", "promote", "register", "gate"]
    assert events[1]["version"] == 1
    assert events[1]["previous"] is None
    assert events[1]["note"] == "baseline"
    assert {k: events[3][k] for k in gate} == gate
    assert isinstance(events[3]["ts"], str)

    registry.promote("clf", 2)
    assert registry.history("clf")[-1] | {"ts": None} == {
        "ts": None,
        "event": "promote",
        "version": 2,
        "previous": 1,
        "note": "",
    }
    with pytest.raises(InvalidInput, match="JSON-serialisable"):
        registry.record("clf", {"bad": object()})
    with pytest.raises(NotFound):
        registry.record("unknown", {"event": "x"})


def test_concurrent_registrations_get_distinct_complete_versions(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    count = 12
    sources = [make_model(tmp_path, f"m{i}") for i in range(count)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda src: registry.register("busy", src), sources))

    assert sorted(r.version for r in results) == list(range(1, count + 1))
    for result, src in zip(results, sources, strict=True):
        assert result.metadata["tag"] == src.name.removeprefix("src-")
        assert (result.path / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
        assert (result.path / "tokenizer" / "vocab.txt").is_file()
    assert len(registry.versions("busy")) == count
    assert sum(e["event"] == "register" for e in registry.history("busy")) == count
    assert not [p for p in (registry.root / "busy").iterdir() if p.name.startswith(".incoming")]
    assert [p.name for p in registry.root.iterdir()] == ["busy"]


def tag_loader(version: ModelVersion) -> str:
    return f"{version.metadata['tag']}@{version.version}"


def test_watcher_picks_up_a_promotion_on_refresh(registry: ModelRegistry, tmp_path: Path) -> None:
    watcher = ActiveModelWatcher(registry, "clf", tag_loader)
    with pytest.raises(ModelNotReady):
        watcher.current()
    assert watcher.version is None

    registry.register("clf", make_model(tmp_path, "a"), promote=True)
    assert watcher.current() == "a@1"
    assert watcher.version == 1
    assert watcher.refresh() is False

    registry.register("clf", make_model(tmp_path, "b"), promote=True)
    assert watcher.current() == "a@1"
    assert watcher.refresh() is True
    assert watcher.current() == "b@2"
    assert watcher.version == 2
    assert watcher.refresh() is False

    registry.promote("clf", 1)  # rolling back is a change too
    assert watcher.refresh() is True
    assert watcher.current() == "a@1"


def test_watcher_keeps_the_old_model_while_loading_and_when_the_loader_fails(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    seen_during_load: list[str] = []
    fail = True

    def loader(version: ModelVersion) -> str:
        if version.version == 2:
            seen_during_load.append(watcher.current())
            if fail:
                raise RuntimeError("corrupt weights")
        return tag_loader(version)

    watcher: ActiveModelWatcher[str] = ActiveModelWatcher(registry, "clf", loader, retry_s=0)
    registry.register("clf", make_model(tmp_path, "a"), promote=True)
    assert watcher.current() == "a@1"

    registry.register("clf", make_model(tmp_path, "b"), promote=True)
    with pytest.raises(RuntimeError, match="corrupt weights"):
        watcher.refresh()
    assert watcher.current() == "a@1"
    assert watcher.version == 1
    assert seen_during_load == ["a@1"]

    fail = False  # with retry_s=0 the next refresh retries the same promotion
    assert watcher.refresh() is True
    assert watcher.current() == "b@2"
    assert seen_during_load == ["a@1", "a@1"]


def test_a_broken_promotion_is_loaded_once_and_the_loaded_version_keeps_serving(
    registry: ModelRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loads: list[int] = []

    def loader(version: ModelVersion) -> str:
        loads.append(version.version)
        if version.metadata["tag"] == "broken":
            raise InvalidInput("expected labels negative and positive")
        return tag_loader(version)

    watcher: ActiveModelWatcher[str] = ActiveModelWatcher(registry, "clf", loader)
    registry.register("clf", make_model(tmp_path, "a"), promote=True)
    assert watcher.latest() == "a@1"

    registry.register("clf", make_model(tmp_path, "broken"), promote=True)
    with caplog.at_level("ERROR", logger="textcore.registry"):
        assert [watcher.latest() for _ in range(5)] == ["a@1"] * 5
    assert loads == [1, 2]  # tried once, not on every call
    assert len([r for r in caplog.records if "still serving version 1" in r.getMessage()]) == 1

    registry.register("clf", make_model(tmp_path, "c"), promote=True)  # a new promotion is tried at once
    assert watcher.latest() == "c@3"
    assert loads == [1, 2, 3]


def test_a_first_version_that_cannot_load_is_not_ready_with_the_reason(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    def loader(version: ModelVersion) -> str:
        raise InvalidInput("expected labels negative and positive")

    watcher: ActiveModelWatcher[str] = ActiveModelWatcher(registry, "clf", loader)
    registry.register("clf", make_model(tmp_path, "broken"), promote=True)
    for _ in range(2):  # the first call tries the load; the second reports the same reason without it
        with pytest.raises(ModelNotReady, match="version 1: expected labels negative and positive"):
            watcher.latest()
    assert watcher.version is None


def test_current_reports_a_first_load_that_fails_as_not_ready_and_recovers(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    fail = True

    def loader(version: ModelVersion) -> str:
        if fail:
            raise RuntimeError("weights half copied")
        return tag_loader(version)

    watcher: ActiveModelWatcher[str] = ActiveModelWatcher(registry, "clf", loader, retry_s=0)
    registry.register("clf", make_model(tmp_path, "a"), promote=True)
    # the loader's own exception used to escape current() (a 500 in a service) on the first try
    with pytest.raises(ModelNotReady, match="version 1: weights half copied") as raised:
        watcher.current()
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert watcher.version is None

    fail = False  # the next call after retry_s loads the same promotion
    assert watcher.current() == "a@1"
    assert watcher.version == 1


def test_watcher_serves_readers_from_other_threads(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.register("clf", make_model(tmp_path, "a"), promote=True)
    watcher = ActiveModelWatcher(registry, "clf", tag_loader)
    # loaded before the readers start: else a reader slow to start may make the first load after the
    # promotion below, and the refresh then rightly finds nothing new
    assert watcher.current() == "a@1"
    stop = threading.Event()
    seen: set[str] = set()

    def read() -> None:
        while not stop.is_set():
            seen.add(watcher.current())

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    try:
        registry.register("clf", make_model(tmp_path, "b"), promote=True)
        assert watcher.refresh() is True
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=5)
    assert seen <= {"a@1", "b@2"}
    assert watcher.current() == "b@2"


def test_promote_if_active_refuses_when_the_active_version_changed(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    registry.register("clf", make_model(tmp_path, "a"))
    registry.register("clf", make_model(tmp_path, "b"))
    with pytest.raises(Conflict, match="expected version 1 of 'clf' to be active; found None"):
        registry.promote("clf", 2, if_active=1)
    assert registry.promote("clf", 1, if_active=None).version == 1
    with pytest.raises(Conflict, match="expected version None of 'clf' to be active; found 1"):
        registry.promote("clf", 2, if_active=None)
    assert registry.active("clf").version == 1
    assert registry.promote("clf", 2, if_active=1).version == 2
