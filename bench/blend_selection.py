"""How the recommender's blend is chosen: the single best grid cell against the best neighbourhood.

For a trained model folder, every (content variant x blend weights) cell of the training grid is scored on
two sets of users at once: the validation items training chose on (each user's second-to-last item), and the
held-out last items `recommender evaluate --protocol leave-last-out` tests on. Each selection rule picks a
cell from the validation table alone; the report gives the picked cell's NDCG@10 on the held-out items, once
on all validation users and then on random halves of them (how steady each rule is). The co-occurrence
variant is the model's own (training chose it before the grid).

    python bench/blend_selection.py --model runs/rec-amazon --interactions runs/amazon/interactions.csv \
        --items runs/amazon/items.csv --name blend-amazon
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

# This folder holds a file named like the service's package: keep it off the front of the path.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]

from common import RESULTS_DIR, command_line, machine_info, write_results  # noqa: E402

from recommender.baselines import ItemKNN, Popularity  # noqa: E402
from recommender.blend_selection import (  # noqa: E402
    ContentKey,
    Weights,
    choose_cell,
    content_variants,
    weight_grid,
)
from recommender.data import Catalog, read_catalog, read_interactions  # noqa: E402
from recommender.model import ModelConfig, TextInterestModel, zscore  # noqa: E402
from recommender.protocol import (  # noqa: E402
    candidate_mask,
    history_positions,
    leave_last_out,
    target_ranks,
)

Table = dict[tuple[ContentKey, Weights], np.ndarray]  # cell -> per-user NDCG@10 gains


def users_and_targets(
    train: dict[str, list[str]], test: dict[str, str], catalog: Catalog
) -> tuple[list[list[int]], np.ndarray]:
    users = [u for u in sorted(test) if test[u] in catalog.index and history_positions(train[u], catalog)]
    histories = [history_positions(train[u], catalog) for u in users]
    return histories, np.array([catalog.index[test[u]] for u in users], dtype=np.int64)


def gains(scores: np.ndarray, histories: list[list[int]], targets: np.ndarray) -> np.ndarray:
    """Per-user NDCG@10 of the held-out item among the items outside the history (ties count against it)."""
    ranks = target_ranks(scores, targets, candidate_mask(histories, targets, scores.shape[1]))
    return np.where(ranks <= 10, 1 / np.log2(ranks + 1.0), 0.0)


def grid_table(
    model: TextInterestModel,
    vectors: np.ndarray,
    catalog: Catalog,
    train: dict[str, list[str]],
    histories: list[list[int]],
    targets: np.ndarray,
) -> Table:
    """Every cell's per-user gains, the components built as in `recommender.blend_selection.fit_blend`."""
    config = model.config
    knn_model = ItemKNN(train, catalog, shrink=config.knn_shrink, alpha=config.knn_alpha)
    knn = zscore(knn_model(histories, None if config.knn_decay == 1 else config.knn_decay))
    popularity = zscore(Popularity(train, catalog)(histories))
    # the variants training tried start from the default profile settings, not from the ones it chose
    start = dataclasses.replace(config, recency_decay=ModelConfig().recency_decay, max_share=0.0)
    base = TextInterestModel(model.encoder, start, model.weights, {})
    table: Table = {}
    for key, content in content_variants(base, histories, vectors, catalog.titles):
        for w in weight_grid():
            table[key, w] = gains(w[0] * content + w[1] * knn + w[2] * popularity, histories, targets)
    return table


def pick(table: Table, users: np.ndarray, rule: str) -> tuple[ContentKey, Weights]:
    figures = {cell: {"ndcg@10": float(g[users].mean())} for cell, g in table.items()}
    if rule == "single best cell":
        return max(figures, key=lambda c: figures[c]["ndcg@10"])
    choice = choose_cell(figures)
    return choice.key, choice.weights


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="folder from `recommender train`")
    parser.add_argument("--interactions", type=Path, required=True)
    parser.add_argument("--items", type=Path, required=True)
    parser.add_argument("--halves", type=int, default=20, help="random halves of the validation users")
    parser.add_argument("--name", default="blend-selection")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    catalog = read_catalog(args.items)
    outer = leave_last_out(read_interactions(args.interactions).sequences())
    inner = leave_last_out(outer.train)
    model = TextInterestModel.load(args.model)
    vectors = model.item_vectors(catalog.texts)
    validation = grid_table(
        model, vectors, catalog, inner.train, *users_and_targets(inner.train, inner.test, catalog)
    )
    test_users = users_and_targets(outer.train, outer.test, catalog)
    held_out = grid_table(model, vectors, catalog, outer.train, *test_users)
    baseline = float(gains(ItemKNN(outer.train, catalog)(test_users[0], None), *test_users).mean())
    n_validation = len(next(iter(validation.values())))
    rng = np.random.default_rng(0)
    halves = [rng.choice(n_validation, n_validation // 2, replace=False) for _ in range(args.halves)]
    rows: list[dict[str, Any]] = []
    for rule in ("single best cell", "best neighbourhood"):
        cell = pick(validation, np.arange(n_validation), rule)
        on_halves = [float(held_out[pick(validation, h, rule)].mean()) for h in halves]
        rows.append({
            "rule": rule,
            "cell": {"content": cell[0], "weights": cell[1]},
            "validation_ndcg@10": float(validation[cell].mean()),
            "held_out_ndcg@10": float(held_out[cell].mean()),
            "vs_item_knn": float(held_out[cell].mean()) / baseline,
            "halves_held_out_ndcg@10": {"median": statistics.median(on_halves), "min": min(on_halves),
                                         "max": max(on_halves)},
        })  # fmt: skip
    best = max(float(g.mean()) for g in held_out.values())
    payload = {
        "command": command_line(),
        "machine": machine_info(),
        "model": str(args.model),
        "n_validation_users": n_validation,
        "n_test_users": len(test_users[1]),
        "item_knn_ndcg@10": baseline,
        "best_cell_on_held_out_ndcg@10": best,
        "rules": rows,
    }
    lines = [
        f"# Blend selection: {args.model}",
        "",
        f"`{command_line()}`; {n_validation} validation users, {len(test_users[1])} held-out users; "
        f"item-kNN {baseline:.4f}; the grid's best cell on the held-out items {best:.4f}.",
        "",
        "| rule | cell | validation NDCG@10 | held-out NDCG@10 | vs item-kNN | halves: median (min-max) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        h = r["halves_held_out_ndcg@10"]
        cells = [
            r["rule"],
            f"{r['cell']['content']} {r['cell']['weights']}",
            f"{r['validation_ndcg@10']:.4f}",
            f"{r['held_out_ndcg@10']:.4f}",
            f"{r['vs_item_knn']:.3f}x",
            f"{h['median']:.4f} ({h['min']:.4f}-{h['max']:.4f})",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    json_path, md_path = write_results(args.name, payload, "\n".join(lines) + "\n", args.out_dir)
    print("\n".join(lines))
    print(f"written: {json_path}, {md_path}")


if __name__ == "__main__":
    main()
