"""Few-shot: the SetFit-style path against full fine-tuning at k examples per class on BANKING77.

One fixed split for every run: `stratified_split(banking77, 0.1, seed)` is the evaluation set (about 1,000
rows, reported only); from the remaining 90%, 2 rows per intent are the development set that both methods
select their checkpoint on, and the k-per-class training sets are drawn from the rest with
`textcore.data.sample_per_class` (nested: the k=8 draw lies inside the k=16 draw). For each k both methods
train on the same rows with the same base model, max length, batch size, learning rate and seed:

- **setfit**: `textcore.training.train_few_shot` (contrastive pairs, then a logistic-regression head);
- **full**: `textcore.training.train_classifier` (the classification task, all weights but the word
  embeddings).

    python bench/fewshot.py                      # k = 8, 16, 64
    python bench/fewshot.py --k 8 --limit-eval 200 --setfit-epochs 1 --full-epochs 1   # smoke run

Results: bench/results/fewshot.json and bench/results/fewshot.md.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub/transformers are imported

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` beside this file, however it is run

import argparse
import tempfile
import time
from typing import Any

from common import (
    REPO_ROOT,
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

from textcore.classifier import Classifier
from textcore.data import LabelledTexts, file_sha256, read_labelled, sample_per_class, stratified_split
from textcore.evaluation import evaluate_classifier
from textcore.training import TrainConfig, train_classifier, train_few_shot

NAME = "fewshot"
DEFAULT_DATA_TEXT = "../shared/data/banking77/train.csv"
DEV_PER_CLASS = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=None, help=f"default: {DEFAULT_DATA_TEXT}")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="intent")
    parser.add_argument(
        "--k", default="8,16,64", help="rows per class, comma-separated (default: %(default)s)"
    )
    parser.add_argument("--base-model", default="minilm")
    parser.add_argument("--max-length", type=int, default=64, help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=16, help="default: %(default)s")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="default: %(default)s")
    parser.add_argument(
        "--setfit-epochs", type=int, default=2, help="pair epochs of the setfit side (default: %(default)s)"
    )
    parser.add_argument(
        "--full-epochs",
        type=int,
        default=0,
        help="epochs of full fine-tuning; 0 scales with k: 15 at k=8, 5 at 16, 4 at 64 (default: 0)",
    )
    parser.add_argument("--limit-eval", type=int, default=None, help="score only the first N evaluation rows")
    parser.add_argument("--seed", type=int, default=42, help="split, draws, init and order")
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="results folder (default: bench/results)"
    )
    parser.add_argument("--name", default=NAME, help="results file stem (default: %(default)s)")
    return parser.parse_args(argv)


def full_epochs(args: argparse.Namespace, k: int) -> int:
    """Fewer rows need more passes to take as many optimisation steps (early stopping ends them sooner)."""
    if args.full_epochs:
        return int(args.full_epochs)
    return 15 if k <= 8 else 5 if k <= 16 else 4


def splits(args: argparse.Namespace, path: Path) -> tuple[LabelledTexts, LabelledTexts, LabelledTexts]:
    """(evaluation, development, pool for the k draws)."""
    pool, evaluation = stratified_split(
        read_labelled(path, args.text_column, args.label_column), 0.1, args.seed
    )
    if args.limit_eval is not None:
        evaluation = evaluation.subset(range(min(args.limit_eval, len(evaluation))))
    dev, rest = sample_per_class(pool, DEV_PER_CLASS, args.seed)
    return evaluation, dev, rest


def run(
    method: str, train: LabelledTexts, dev: LabelledTexts, evaluation: LabelledTexts, config: TrainConfig
) -> dict[str, Any]:
    trainer = train_few_shot if method == "setfit" else train_classifier
    with tempfile.TemporaryDirectory(prefix="bench-fewshot-") as tmp:
        started = time.perf_counter()
        result = trainer(train, config, Path(tmp) / "model", validation=dev, progress=False)
        wall = time.perf_counter() - started
        report = evaluate_classifier(
            Classifier.load(Path(tmp) / "model", max_length=config.max_length), evaluation
        )
    training = result.metadata["training"]
    return {
        "method": method,
        "train_rows": len(train),
        "epochs": config.epochs,
        "steps": training["steps"],
        "best_step": training["best_step"],
        "train_seconds": training["seconds"],
        "samples_per_second": training["samples_per_second"],
        "wall_seconds": wall,
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "config": config.to_dict(),
    }


def markdown(payload: dict[str, Any], rows: list[list[str]], headers: list[str]) -> str:
    s = payload["settings"]
    settings = (
        f"BANKING77 {s['data']}: evaluation {s['evaluation_rows']} rows (stratified 10%, seed {s['seed']}), "
        f"development {s['development_rows']} rows ({DEV_PER_CLASS} per intent, both methods select on it), "
        f"{s['base_model']}, max length {s['max_length']}, batch {s['batch_size']}, lr {s['learning_rate']}"
    )
    parts = [markdown_header("Few-shot: SetFit-style vs full fine-tuning", payload, settings)]
    parts.append(markdown_table(headers, rows))
    parts.append(
        "\nsamples/s: rows per second of training-loop time (setfit counts both texts of a pair). The "
        "accuracy is on the evaluation rows, which no run trains or selects on.\n"
    )
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = (args.data or REPO_ROOT / DEFAULT_DATA_TEXT).expanduser().resolve()
    if not path.is_file():
        print(f"{NAME}: skipped: no data file at {path} (BANKING77 train.csv; pass --data FILE)")
        return 0
    quiet_transformers()
    warn_if_busy()
    machine = machine_info()
    evaluation, dev, rest = splits(args, path)
    base = TrainConfig(
        base_model=args.base_model,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_length=args.max_length,
        seed=args.seed,
    )
    results = []
    for k in (int(x) for x in args.k.split(",")):
        train, _ = sample_per_class(rest, k, args.seed)
        for method, config in (
            ("setfit", base.replace(task="setfit", epochs=args.setfit_epochs)),
            ("full", base.replace(epochs=full_epochs(args, k))),
        ):
            print(f"--- k={k} {method}: {len(train)} rows", flush=True)
            results.append({"k": k, **run(method, train, dev, evaluation, config)})
    payload = {
        "benchmark": NAME,
        "created_at": utc_now(),
        "command": command_line(),
        "machine": machine,
        "settings": {
            "data": str(path),
            "data_sha256": file_sha256(path),
            "evaluation_rows": len(evaluation),
            "development_rows": len(dev),
            "seed": args.seed,
            "base_model": args.base_model,
            "max_length": args.max_length,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
        },
        "results": results,
    }
    headers = ["k", "method", "train rows", "epochs", "steps", "train s", "samples/s", "accuracy", "macro-F1"]
    rows = [
        [
            str(r["k"]),
            r["method"],
            fmt(r["train_rows"], 0),
            str(r["epochs"]),
            str(r["steps"]),
            fmt(r["train_seconds"]),
            fmt(r["samples_per_second"]),
            fmt(r["accuracy"], 4),
            fmt(r["macro_f1"], 4),
        ]
        for r in results
    ]
    print_table("Few-shot on BANKING77", headers, rows)
    json_path, md_path = write_results(args.name, payload, markdown(payload, rows, headers), args.out)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
