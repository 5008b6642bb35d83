"""Recommender: the cost of a one-item edit (`PUT /v1/items/{id}`, `DELETE /v1/items/{id}`) by catalog size.

For each `--sizes` catalog (synthetic products, ids `item-000000`...), a fresh SQLite database and index file
are filled through `ItemCatalog.upsert`, the code path the service uses, with a stand-in item tower that
returns random unit vectors: MiniLM on 2 CPU cores would take most of an hour for 100,000 items, and the
cost of an edit does not depend on what the other vectors are. Then `--edits` one-item edits are timed,
each through the same `ItemCatalog` calls the routes make: `upsert([item])` (the PUT; the item's text
changes, so it is embedded) and `delete(id)` (the DELETE). Those edits embed with the real MiniLM item tower
(`TextInterestModel.from_base`), one text at a time, as a PUT does.

Each edit is split into the time spent embedding, writing the database, and saving the index file and its
sidecar (the catalog's `_vectors_of`, `_store` and `_save`, timed by a subclass of the catalog; a deferred
save, in its own thread, is not counted in an edit); "rest" is the remainder (hashing, the index's own
update, locks, and for a DELETE its database write, which `delete_items` does outside the catalog's methods).
Medians over the edits; "without embed" is the median of each edit's time less its embedding, the
part the index file's saving is in (embedding one text varies most on a shared machine).

Side by side on the same catalog (`--modes`): `every-write`, the catalog saving its files at every write
(`save_after_s=0`, what every write did before `REC_INDEX_SAVE_S`), then `deferred` (`save_after_s` =
`--save-after`, 10 s as the service's default): the edits leave the save to a background thread, whose
saves during the timed edits and the final `flush` are recorded in the JSON.

Then, on the same catalog, "PUT during a save": `--edits` PUTs each made while a background save runs (a
PUT schedules a save 1 ms later; once it has begun, a second PUT is timed), side by side in one run with the
save as it was before (`save-holds-lock`: the write lock held while the files are written, so the PUT waits
for the disk) and as it is (`save-outside-lock`: the index copied under the lock, the copy written outside).

    python bench/item_edits.py                                   # 1k, 20k, 100k items
    python bench/item_edits.py --sizes 1000 --edits 5 --out /tmp/bench-smoke

Results: bench/results/item_edits.json and .md (see bench/README.md).
"""

from __future__ import annotations

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

# This folder holds `recommender.py`: keep it off the front of the path, so `import recommender` finds the
# service, and at the end, for `common` beside this file.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from common import (  # noqa: E402
    RESULTS_DIR,
    command_line,
    fmt,
    machine_info,
    markdown_header,
    markdown_table,
    print_table,
    quiet_transformers,
    utc_now,
    warn_if_busy,
    write_results,
)

from recommender.catalog import ItemCatalog, Progress  # noqa: E402
from recommender.database import Database  # noqa: E402
from recommender.item_records import ItemRecord  # noqa: E402
from recommender.model import TextInterestModel  # noqa: E402

NAME = "item_edits"
EDITS = {"put": "PUT", "delete": "DELETE", "put-during-save": "PUT during a save"}
SAVE_SOON = 0.001  # save_after_s of `during_saves`: the save begins right after the first PUT
MODES: dict[
    str, Callable[[argparse.Namespace], float]
] = {  # how the catalog saves its index files: every write (the behaviour before), or deferred
    "every-write": lambda args: 0.0,
    "deferred": lambda args: args.save_after,
}
HEADERS = [
    "items",
    "edit",
    "saves",
    "index file MB",
    "median ms",
    "without embed ms",
    "embed ms",
    "database ms",
]
HEADERS += ["index save ms", "rest ms", "p90 ms"]


class Tower:
    """The item tower of the run: random unit vectors while filling, the real model while timing edits."""

    def __init__(self, model: TextInterestModel, seed: int) -> None:
        self.model, self.real = model, False
        self.rng = np.random.default_rng(seed)

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self.real:
            return self.model.item_vectors(texts)
        rows = self.rng.standard_normal((len(texts), self.model.dim)).astype(np.float32)
        unit: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        return unit


class TimedCatalog(ItemCatalog):
    """The service's catalog, with the seconds spent in embedding, the database and the file save added up.

    `hold_lock`: its background save as it was before, holding the write lock while it writes the files
    (the writes made meanwhile wait for the disk), for the side by side of `during_saves`.
    """

    seconds: defaultdict[str, float]

    background: list[float]

    hold_lock = False

    def _save_later(self) -> None:
        if not self.hold_lock:
            super()._save_later()
            return
        with self._write:  # the background save before: the snapshot and the files' writing under the lock
            if self._saver is not threading.current_thread():
                return
            self._saver = None
            if self._changes != self._saved:
                self._write_files(self._snapshot())

    def _write_files(self, snapshot: Any, *, force: bool = False) -> None:
        if threading.current_thread() is threading.main_thread():  # timed within `_save` (or a flush)
            super()._write_files(snapshot, force=force)
            return
        began = time.perf_counter()
        try:
            super()._write_files(snapshot, force=force)
        finally:
            self.background.append(time.perf_counter() - began)

    def timed(self, part: str, began: float) -> None:
        if threading.current_thread() is threading.main_thread():
            self.seconds[part] += time.perf_counter() - began
        else:  # the deferred save's thread, not the edit's
            self.background.append(time.perf_counter() - began)

    def _vectors_of(self, items: Sequence[ItemRecord], progress: Progress | None) -> np.ndarray:
        began = time.perf_counter()
        try:
            return super()._vectors_of(items, progress)
        finally:
            self.timed("embed", began)

    def _store(self, items: Sequence[ItemRecord]) -> tuple[int, int]:
        began = time.perf_counter()
        try:
            return super()._store(items)
        finally:
            self.timed("database", began)

    def _save(self) -> None:  # a save at every write, in the edit's thread
        began = time.perf_counter()
        try:
            super()._save()
        finally:
            self.timed("save", began)


def products(n: int) -> list[ItemRecord]:
    """`n` synthetic products of one or two sentences."""
    nouns = ["microscope", "tent", "headphones", "blender", "yoga mat", "desk lamp", "telescope", "drill"]
    uses = ["home labs", "field work", "commuting", "small kitchens", "students", "travel", "workshops"]
    return [
        ItemRecord(
            f"item-{i:06d}",
            f"Acme {nouns[i % len(nouns)]} {i}",
            f"A sturdy {nouns[i % len(nouns)]} for {uses[i % len(uses)]}; weighs {80 + i % 3900} g.",
            [nouns[i % len(nouns)]],
        )
        for i in range(n)
    ]


def measure(
    size: int, args: argparse.Namespace, model: TextInterestModel, folder: Path
) -> list[dict[str, Any]]:
    """Fill a catalog of `size` items, then time `args.edits` PUTs and DELETEs; one row per kind of edit."""
    db = Database(f"sqlite:///{folder / 'rec.db'}")
    try:
        db.migrate()
        tower = Tower(model, args.seed)
        catalog = TimedCatalog(db, tower, model.dim, folder / "index" / "items.npz", "bench", batch_size=4096)
        catalog.seconds, catalog.background = defaultdict(float), []
        catalog.sync()
        began = time.perf_counter()
        catalog.upsert(products(size))
        fill_s = time.perf_counter() - began
        tower.real = True
        tower([("warm-up item " * 5).strip()])
        rng = np.random.default_rng(args.seed + size)
        rows = []
        picks = iter(rng.permutation(size))
        for mode, kind in [(m, k) for m in args.modes.split(",") for k in ("put", "delete")]:
            catalog.flush()
            catalog.save_after_s = MODES[mode](args)
            catalog.background = []
            samples: list[dict[str, float]] = []
            for n, i in zip(range(args.edits), picks, strict=False):
                item_id = f"item-{int(i):06d}"
                catalog.seconds = defaultdict(float)
                began = time.perf_counter()
                if kind == "put":
                    catalog.upsert([edited(int(i), n)])
                else:
                    catalog.delete(item_id)
                total = time.perf_counter() - began
                samples.append({"total": total, **catalog.seconds})
            began = time.perf_counter()
            flushed = catalog.flush()
            flush_s = time.perf_counter() - began if flushed else None
            row = summary(size, kind, samples, catalog.index_path.stat().st_size, fill_s)
            saving = {"mode": mode, "save_after_s": catalog.save_after_s}
            rows.append(row | saving | {"background_saves_s": catalog.background, "final_flush_s": flush_s})
        return rows + during_saves(catalog, size, args, picks, fill_s)
    finally:
        db.dispose()


def during_saves(
    catalog: TimedCatalog, size: int, args: argparse.Namespace, picks: Iterator[Any], fill_s: float
) -> list[dict[str, Any]]:
    """`args.edits` PUTs each made while a background save runs, with the save holding the write lock while
    it writes the files (as before) and with it writing a copy outside the lock; one row each.

    Each sample: a PUT schedules a save `SAVE_SOON` seconds later; once that save has begun, a second PUT is
    timed; then a flush waits for the saves in flight, so the next sample starts with the files current.
    """
    rows = []
    for mode, hold in (("save-holds-lock", True), ("save-outside-lock", False)):
        catalog.flush()
        catalog.hold_lock, catalog.save_after_s, catalog.background = hold, SAVE_SOON, []
        samples: list[dict[str, float]] = []
        for n, first, second in zip(range(args.edits), picks, picks, strict=False):
            catalog.upsert([edited(int(first), n)])
            while catalog._saver is not None:  # the save has begun: it holds the lock, or copies, or writes
                time.sleep(0.0005)
            catalog.seconds = defaultdict(float)
            began = time.perf_counter()
            catalog.upsert([edited(int(second), n)])
            samples.append({"total": time.perf_counter() - began, **catalog.seconds})
            catalog.flush()
        row = summary(size, "put-during-save", samples, catalog.index_path.stat().st_size, fill_s)
        saving = {"mode": mode, "save_after_s": SAVE_SOON, "background_saves_s": catalog.background}
        rows.append(row | saving | {"final_flush_s": None})
    catalog.hold_lock = False
    return rows


def edited(i: int, n: int) -> ItemRecord:
    """Item `i` with a new title and text (a PUT that embeds it)."""
    item_id = f"item-{i:06d}"
    return ItemRecord(item_id, f"Edited product {n}", f"New description {n} of {item_id}.")


def summary(
    size: int, kind: str, samples: list[dict[str, float]], file_bytes: int, fill_s: float
) -> dict[str, Any]:
    def median_ms(part: str) -> float:
        return 1000 * statistics.median(s.get(part, 0.0) for s in samples)

    totals = sorted(s["total"] for s in samples)
    other = [s["total"] - sum(s.get(p, 0.0) for p in ("embed", "database", "save")) for s in samples]
    return {
        "items": size,
        "edit": kind,
        "edits": len(samples),
        "index_file_bytes": file_bytes,
        "fill_seconds": fill_s,
        "median_ms": median_ms("total"),
        "without_embed_ms": 1000 * statistics.median(s["total"] - s.get("embed", 0.0) for s in samples),
        "embed_ms": median_ms("embed"),
        "database_ms": median_ms("database"),
        "save_ms": median_ms("save"),
        "other_ms": 1000 * statistics.median(other),
        "p90_ms": 1000 * totals[min(len(totals) - 1, int(0.9 * len(totals)))],
        "samples": samples,
    }


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            f"{r['items']:,}",
            EDITS[r["edit"]],
            r["mode"],
            fmt(r["index_file_bytes"] / 1e6),
            fmt(r["median_ms"]),
            fmt(r["without_embed_ms"]),
            fmt(r["embed_ms"]),
            fmt(r["database_ms"]),
            fmt(r["save_ms"]),
            fmt(r["other_ms"]),
            fmt(r["p90_ms"]),
        ]
        for r in rows
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,20000,100000", help="catalog sizes, comma-separated")
    parser.add_argument("--edits", type=int, default=15, help="timed PUTs and DELETEs per size")
    parser.add_argument("--model", default="minilm", help="base encoder of the item tower")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--modes", default="every-write,deferred", help=f"index saving: {', '.join(MODES)}")
    parser.add_argument("--save-after", type=float, default=10.0, help="save_after_s of the deferred mode")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="folder for the databases (default: a temp dir)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default=NAME)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    unknown = set(args.modes.split(",")) - set(MODES)
    if unknown:
        parser.error(f"expected --modes among {', '.join(MODES)}; found {', '.join(sorted(unknown))}")
    # each edit takes an item no other edit took; `during_saves` edits two items a sample, in two modes
    changed = 2 * len(args.modes.split(",")) * args.edits + 4 * args.edits
    if min(sizes) <= changed:
        parser.error(f"expected every size above {changed} (the items edited); found {args.sizes}")
    warn_if_busy()
    quiet_transformers()
    machine = machine_info()
    model = TextInterestModel.from_base(args.model, device="cpu", precision="fp32")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for size in sizes:
            folder = Path(tmp) / str(size)
            folder.mkdir()
            rows += measure(size, args, model, folder)
            print_table(NAME, HEADERS, table_rows([r for r in rows if r["items"] == size]))
    payload: dict[str, Any] = {"created_at": utc_now(), "command": command_line(), "machine": machine}
    payload |= {"settings": vars(args), "results": rows}
    settings = (
        f"{args.edits} edits per size and kind, SQLite in a temp folder; catalog vectors random unit vectors "
        f"written through `ItemCatalog.upsert`, the edited items embedded by {args.model} (fp32, CPU)"
    )
    markdown = markdown_header("One-item edits by catalog size", payload, settings)
    markdown += markdown_table(HEADERS, table_rows(rows))
    print_table(NAME, HEADERS, table_rows(rows))
    for path in write_results(args.name, payload, markdown, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
