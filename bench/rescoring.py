"""What the recommender's optional cross-encoder rescorer costs per request: the service with and without it.

A trained model with a rescorer (`recommender train-rescorer`) serves a dataset's catalog and behaviour from
a fresh SQLite database (the service's own `open_recommender`, in process: HTTP adds the same to both). For
`--requests` sampled users, `Recommender.score` (a user's stored history, `--candidates` random unseen items)
and `Recommender.recommend` (k=10, exclude seen) run with the rescorer and without it, alternately, so both
see the same machine load; the table gives median and p95 latency and their ratio. When the model's fitted
weight is 0 (the service would not re-score), the timing uses weight 1: the cost does not depend on it.

Quality is not measured here: `recommender evaluate` prints the re-scored model beside the blend alone.

    python bench/rescoring.py --model runs/rec-movielens --interactions runs/movielens/interactions.csv \
        --items runs/movielens/items.csv --name rescoring-movielens
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import csv
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

# This folder holds a file named like the service's package: keep it off the front of the path.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]

from common import RESULTS_DIR, command_line, machine_info, utc_now, write_results  # noqa: E402

from recommender.events import EventRecord  # noqa: E402
from recommender.item_records import ItemRecord  # noqa: E402
from recommender.profiles import Query  # noqa: E402
from recommender.rescoring import Rescorer  # noqa: E402
from recommender.serving import Recommender  # noqa: E402
from recommender.settings import RecommenderSettings  # noqa: E402
from recommender.startup import open_recommender  # noqa: E402
from textcore import EncoderSettings  # noqa: E402


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def stock(service: Recommender, items: Path, interactions: Path) -> dict[str, list[str]]:
    """Store the catalog and the behaviour; return each user's items."""
    records = [ItemRecord(r["item_id"], r["title"], r.get("text", "")) for r in read_rows(items)]
    for start in range(0, len(records), service.max_items):
        service.upsert_items(records[start : start + service.max_items])
    events = [
        EventRecord(r["user_id"], r["item_id"], datetime.fromtimestamp(float(r["timestamp"]), UTC))
        for r in read_rows(interactions)
    ]
    for start in range(0, len(events), service.max_events):
        service.ingest(events[start : start + service.max_events])
    users: dict[str, list[str]] = {}
    for event in events:
        users.setdefault(event.user_id, []).append(event.item_id)
    return users


def timed(call: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    call(*args)
    return (time.perf_counter() - start) * 1000


def summary(ms: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(ms), "p95_ms": float(np.percentile(ms, 95)), "n": len(ms)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="model folder with a rescorer")
    parser.add_argument("--interactions", type=Path, required=True)
    parser.add_argument("--items", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=200, help="users timed per endpoint")
    parser.add_argument("--candidates", type=int, default=1000, help="items per score request")
    parser.add_argument("--name", default="rescoring")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    rescorer = Rescorer.load(args.model, device="cpu")
    if rescorer is None:
        parser.error(f"{args.model} has no rescorer: run `recommender train-rescorer` first")
    fitted = rescorer.rescoring
    timing = dataclasses.replace(fitted, weight=fitted.weight or 1.0)
    rescorer = Rescorer(rescorer.reranker, timing, rescorer.meta)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        settings = RecommenderSettings(
            database_url=f"sqlite:///{tmp}/bench.db",
            model_path=args.model,
            index_path=Path(tmp) / "items.index.npz",
            encoder=EncoderSettings(device="cpu"),
        )
        with open_recommender(settings) as service:
            users = stock(service, args.items, args.interactions)
            ids = service.catalog.index.ids()
            chosen = rng.choice(sorted(users), min(args.requests, len(users)), replace=False).tolist()
            ms: dict[str, list[float]] = {}
            for user in chosen:
                seen = set(users[user])
                unseen = [i for i in ids if i not in seen]
                items = rng.choice(unseen, min(args.candidates, len(unseen)), replace=False).tolist()
                query = Query(user_id=user)
                for with_rescorer in (False, True):  # alternately: both see the same load
                    service.rescorer = rescorer if with_rescorer else None
                    tag = "rescored" if with_rescorer else "blend"
                    ms.setdefault(f"score {tag}", []).append(timed(service.score, query, items))
                    ms.setdefault(f"recommend {tag}", []).append(timed(service.recommend, query, 10))
    rows: dict[str, Any] = {name: summary(values) for name, values in ms.items()}
    for endpoint in ("score", "recommend"):
        blend, rescored = rows[f"{endpoint} blend"], rows[f"{endpoint} rescored"]
        rows[f"{endpoint} ratio"] = {k: rescored[k] / blend[k] for k in ("median_ms", "p95_ms")}
    payload = {
        "command": command_line(),
        "created_at": utc_now(),
        "machine": machine_info(),
        "model": str(args.model),
        "fitted": dataclasses.asdict(fitted),
        "timed_with": dataclasses.asdict(timing),
        "catalog_items": len(ids),
        "candidates_per_score": args.candidates,
        "results": rows,
    }
    lines = [
        f"# Rescorer cost per request: {args.model}",
        "",
        f"`{command_line()}` ({payload['created_at']}); {len(ids)} catalog items, {len(chosen)} users, "
        f"score with {args.candidates} candidates, recommend k=10; re-scoring the top {timing.top_n} "
        f"(fitted weight {fitted.weight:g}); in process, one torch thread per request as the service runs.",
        "",
        "| request | blend median / p95 ms | with rescorer median / p95 ms | ratio median / p95 |",
        "|---|---|---|---|",
    ]
    for endpoint in ("score", "recommend"):
        b, r, x = rows[f"{endpoint} blend"], rows[f"{endpoint} rescored"], rows[f"{endpoint} ratio"]
        lines.append(
            f"| {endpoint} | {b['median_ms']:.1f} / {b['p95_ms']:.1f} | {r['median_ms']:.1f} / "
            f"{r['p95_ms']:.1f} | {x['median_ms']:.2f}x / {x['p95_ms']:.2f}x |"
        )
    json_path, md_path = write_results(args.name, payload, "\n".join(lines) + "\n", args.out_dir)
    print("\n".join(lines))
    print(f"written: {json_path}, {md_path}")


if __name__ == "__main__":
    main()
