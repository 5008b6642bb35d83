"""What a write costs the next search of a large `VectorIndex` (HNSW): retired slots against a graph rebuild.

An index of `--n` random unit vectors (`--dim`, above the HNSW threshold) is built by a first search. Then,
`--repeats` times, one existing id is overwritten and another removed, and the next search is timed: the
index retires their graph slots and searches around them. The baseline is what such a write cost before
(the graph was rebuilt inside the next search): a search on a fresh index holding the same vectors, i.e. a
build plus a search. Both are timed in the same run, alternately; the table gives medians and the ratio, and
the recall@10 of both against brute force (the graph is approximate either way).

    python bench/index_updates.py                      # 21,000 x 384 (just above the 20,000 threshold)
    python bench/index_updates.py --n 100000 --name index-updates-100k
    python bench/index_updates.py --n 3000 --repeats 3 --out /tmp/bench-smoke
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]

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

from textcore.index import VectorIndex  # noqa: E402


def unit(n: int, dim: int, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    rows: npt.NDArray[np.float32] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return rows


def recall_at_10(index: VectorIndex, query: npt.NDArray[np.float32]) -> float:
    """Share of the brute-force top 10 that the index's search finds."""
    ids = index.ids()
    truth = {ids[i] for i in np.argsort(-(index.get_many(ids) @ query))[:10]}
    return len(truth & {h.id for h in index.search(query, 10)}) / 10


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    index = VectorIndex(args.dim, approximate_threshold=args.threshold)
    index.add([f"d{i}" for i in range(args.n)], unit(args.n, args.dim, rng))
    start = time.perf_counter()
    index.search(unit(1, args.dim, rng)[0], 10)
    first_ms = (time.perf_counter() - start) * 1000
    retire_ms, rebuild_ms, recalls, fresh_recalls = [], [], [], []
    for r in range(args.repeats):
        index.upsert([f"d{2 * r}"], unit(1, args.dim, rng))
        index.remove([f"d{2 * r + 1}"])
        query = unit(1, args.dim, rng)[0]
        start = time.perf_counter()
        index.search(query, 10)
        retire_ms.append((time.perf_counter() - start) * 1000)
        recalls.append(recall_at_10(index, query))
        ids = index.ids()
        fresh = VectorIndex(args.dim, approximate_threshold=args.threshold)
        fresh.add(ids, index.get_many(ids))
        start = time.perf_counter()
        fresh.search(query, 10)  # what the next search cost when a write made the index rebuild its graph
        rebuild_ms.append((time.perf_counter() - start) * 1000)
        fresh_recalls.append(recall_at_10(fresh, query))
    return {
        "kind": index.kind,
        "first_search_ms": first_ms,
        "retire_median_ms": statistics.median(retire_ms),
        "rebuild_median_ms": statistics.median(rebuild_ms),
        "ratio": statistics.median(rebuild_ms) / statistics.median(retire_ms),
        "recall_at_10_after_writes": statistics.mean(recalls),
        "recall_at_10_rebuilt": statistics.mean(fresh_recalls),
        "retire_ms": retire_ms,
        "rebuild_ms": rebuild_ms,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=21_000, help="vectors in the index")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--threshold", type=int, default=20_000, help="approximate_threshold (HNSW above)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default="index-updates")
    args = parser.parse_args(argv)
    warn_if_busy()
    figures = run(args)
    payload = {
        "command": command_line(),
        "created_at": utc_now(),
        "machine": machine_info(),
        "settings": vars(args) | {"out": str(args.out)},
        "figures": figures,
    }
    headers = ["search after one overwrite and one remove", "median ms", "vs retired slots", "recall@10"]
    rows = [
        ["retired slots (now)", fmt(figures["retire_median_ms"], 2), "1.00x",
         f"{figures['recall_at_10_after_writes']:.3f}"],
        ["graph rebuilt (before)", fmt(figures["rebuild_median_ms"], 1), f"{figures['ratio']:.0f}x",
         f"{figures['recall_at_10_rebuilt']:.3f}"],
    ]  # fmt: skip
    print_table(f"VectorIndex, {args.n:,} x {args.dim} ({figures['kind']})", headers, rows)
    settings = (
        f"{args.n:,} random unit vectors of {args.dim} dimensions, HNSW above {args.threshold:,}; "
        f"{args.repeats} rounds of one overwrite and one remove, each followed by one timed search"
    )
    markdown = markdown_header("Index updates: the next search's cost", payload, settings)
    markdown += markdown_table(headers, rows)
    markdown += (
        "\nrecall@10: share of the brute-force top 10 the search found (the mean over the rounds). Random "
        "vectors are HNSW's hardest case; both rows search graphs built with the same settings.\n"
    )
    json_path, md_path = write_results(args.name, payload, markdown, args.out)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
