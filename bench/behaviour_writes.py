"""Recommender: how long deleting an item or erasing a user keeps the service's event writes waiting.

A fresh SQLite database (the default store) holds `--events` events of one item, `--events` events of one
user (on other items) and `--others` more, spread over 1,000 items and 5,000 users in time order, as a live
store interleaves them. Then the item is deleted (`recommender.item_deletion.delete_items`, what `DELETE
/v1/items/{id}` and `recommender delete-items` call) and the user erased (`recommender.events.erase_user`,
`DELETE /v1/users/{id}` and `recommender erase-user`), while a second thread stores one new event after
another through `ingest_events` (what `POST /v1/events` calls), 5 ms apart: its longest wait is how long
the service's writes were held up. Side by side, on a fresh database each, in one run: the code as it was
(`before`: frozen copies below; the item's events read out, their keys hashed in Python and written back
row by row, and the user's events deleted in one transaction) and as it is (`now`: one UPDATE per item in
SQL, and the erasure in transactions of `ERASE_BATCH` events). Medians over `--runs`.

    python bench/behaviour_writes.py                              # 100,000 events of the item and user
    python bench/behaviour_writes.py --events 5000 --others 10000 --runs 1 --out /tmp/bench-smoke

Results: bench/results/behaviour_writes.json and .md (see bench/README.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

# This folder holds `recommender.py`: keep it off the front of the path, so `import recommender` finds the
# service, and at the end, for `common` beside this file.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]

import argparse  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

from common import (  # noqa: E402
    RESULTS_DIR,
    command_line,
    fmt,
    machine_info,
    markdown_header,
    markdown_table,
    print_table,
    utc_now,
    warn_if_busy,
    write_results,
)
from sqlalchemy import bindparam, delete, insert, select, update  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from recommender.changes import ERASURES, EVENTS, ITEMS, bump  # noqa: E402
from recommender.database import Database  # noqa: E402
from recommender.events import ERASE_BATCH, EventRecord, erase_user, ingest_events  # noqa: E402
from recommender.item_deletion import delete_items, detached_id  # noqa: E402
from recommender.tables import Base, Event, Item, event_fingerprint  # noqa: E402

NAME = "behaviour_writes"
ITEM, USER = "item-hot", "user-hot"
START = datetime(2026, 1, 1, tzinfo=UTC)
PAUSE_S = 0.005  # between the writer's events


def fill(db: Database, per_target: int, others: int) -> None:
    """The item's and the user's events and the others, interleaved in time (and id) order."""
    items = [ITEM] + [f"item-{i:04d}" for i in range(999)]
    rng = random.Random(0)
    kinds = ["item"] * per_target + ["user"] * per_target + ["other"] * others
    rng.shuffle(kinds)
    rows = []
    for n, kind in enumerate(kinds):
        item = ITEM if kind == "item" else rng.choice(items[1:])
        user = USER if kind == "user" else f"user-{rng.randrange(5000)}"
        ts = START + timedelta(seconds=n)
        key = event_fingerprint(user, item, ts, "click", None)
        rows.append({"user_id": user, "item_id": item, "ts": ts, "type": "click", "value": None,
                     "fingerprint": key, "event_id": None})  # fmt: skip
    with db.session() as session:
        session.execute(insert(Item), [{"id": i, "title": i, "text": ""} for i in items])
        for start in range(0, len(rows), 5000):
            session.execute(insert(Event), rows[start : start + 5000])
    db.checkpoint()


# The code as it was, frozen here for the comparison.
_EVENTS = Base.metadata.tables["events"]
_ROW = update(_EVENTS).where(_EVENTS.c.id == bindparam("row_id"))


def delete_item_before(db: Database, item_id: str) -> None:
    with db.session() as session:
        bump(session, ITEMS)
        session.execute(delete(Item).where(Item.id == item_id))
        bump(session, EVENTS)
        bump(session, ERASURES)
        _detach_before(session, item_id)


def _detach_before(session: Session, item_id: str) -> None:
    detached = detached_id()
    columns = (Event.id, Event.user_id, Event.ts, Event.type, Event.value, Event.fingerprint, Event.event_id)
    rows = []
    for key, user_id, ts, event_type, value, held, event_id in session.execute(
        select(*columns).where(Event.item_id == item_id)
    ):
        fingerprint = held
        if event_id is None or held == event_fingerprint(user_id, item_id, ts, event_type, value):
            fingerprint = event_fingerprint(user_id, detached, ts, event_type, value)
        rows.append({"row_id": key, "key": fingerprint})
    statement = _ROW.values(item_id=detached, fingerprint=bindparam("key"))
    for start in range(0, len(rows), 5000):
        session.execute(statement, rows[start : start + 5000])


def erase_user_before(db: Database, user_id: str) -> None:
    with db.session() as session:
        bump(session, ERASURES)
        session.execute(delete(Event).where(Event.user_id == user_id))
    db.checkpoint()


CODE: dict[str, dict[str, Callable[[Database], Any]]] = {
    "before": {
        "delete item": lambda db: delete_item_before(db, ITEM),
        "erase user": lambda db: erase_user_before(db, USER),
    },
    "now": {
        "delete item": lambda db: delete_items(db, [ITEM]),
        "erase user": lambda db: erase_user(db, USER),
    },
}


def timed(db: Database, action: Callable[[Database], Any]) -> dict[str, float]:
    """The action's time and the longest wait of one-event writes made meanwhile, in ms."""
    waits: list[float] = []
    done = threading.Event()

    def writer() -> None:
        n = 0
        while not done.is_set():
            n += 1
            record = EventRecord(f"writer-{n}", "item-0000", START - timedelta(seconds=n))
            began = time.perf_counter()
            ingest_events(db, [record])
            waits.append((time.perf_counter() - began) * 1000)
            time.sleep(PAUSE_S)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.2)  # the writer is under way
    began = time.perf_counter()
    action(db)
    took = (time.perf_counter() - began) * 1000
    done.set()
    thread.join()
    return {"action_ms": took, "longest_wait_ms": max(waits), "writes": len(waits)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    for n in range(args.runs):
        for code, actions in CODE.items():
            with tempfile.TemporaryDirectory() as folder:
                db = Database(f"sqlite:///{folder}/bench.db")
                db.migrate()
                fill(db, args.events, args.others)
                for name, action in actions.items():
                    figures = timed(db, action)
                    print(f"run {n + 1} {code} {name}: {figures}", flush=True)
                    results.setdefault(code, {}).setdefault(name, []).append(figures)
                db.dispose()
    return results


def medians(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000, help="events of the item, and of the user")
    parser.add_argument("--others", type=int, default=200_000, help="events of other items and users")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    warn_if_busy()
    payload: dict[str, Any] = {"command": command_line(), "created_at": utc_now(), "machine": machine_info()}
    payload |= {"events": args.events, "others": args.others, "runs": args.runs, "batch": ERASE_BATCH}
    results = run(args)
    payload["runs_figures"] = results
    payload["medians"] = {code: {name: medians(r) for name, r in by.items()} for code, by in results.items()}
    headers = ["action", "code", "action (ms)", "longest event write wait (ms)", "event writes meanwhile"]
    rows = [
        [name, code, fmt(m["action_ms"], 0), fmt(m["longest_wait_ms"], 0), fmt(m["writes"], 0)]
        for name in CODE["now"]
        for code, by in payload["medians"].items()
        for m in [by[name]]
    ]
    title = "Recommender: deleting an item and erasing a user while events are stored"
    print_table(title, headers, rows)
    settings = (
        f"SQLite; {args.events:,} events of the item and {args.events:,} of the user among "
        f"{args.events * 2 + args.others:,}; "
        f"one-event writes {PAUSE_S * 1000:.0f} ms apart meanwhile; erasure batch {ERASE_BATCH:,}; "
        f"medians of {args.runs} runs"
    )
    markdown = markdown_header(title, payload, settings) + markdown_table(headers, rows)
    json_path, md_path = write_results(NAME, payload, markdown, args.out)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
