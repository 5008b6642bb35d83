"""Distillation: seed teachers, their ensemble, and one student distilled from them, side by side.

One fixed split: `stratified_split(data, 0.1, --seed)` (the validation rows every benchmark uses). On its
training rows, in one run:

- **teachers**: `textcore.training.train_classifier` once per `--teacher-seeds` seed, same recipe otherwise;
- **ensemble**: the teachers' mean softmax probabilities (what serving them all would predict; N forward
  passes per text);
- **student**: the same recipe with `--student-seed`, trained on the labels and on the teachers' softened
  probabilities (`TrainConfig.teachers`, `distill_weight`, `distill_temperature`): one model to serve.

Every model selects its checkpoint on the validation rows and is scored on them, so each figure is slightly
optimistic by the same selection; compare them with each other, and with the teachers' spread.

    python bench/distill.py                                              # PhraseBank, 3 teachers
    python bench/distill.py --recipe intents --data ../shared/data/banking77/train.csv \\
        --text-column text --label-column intent                         # BANKING77, the bot's recipe
    python bench/distill.py --teacher-seeds 1,2 --epochs 1 --limit 400 --out /tmp/bench-smoke   # smoke run

Results: bench/results/distill.json and bench/results/distill.md.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub/transformers are imported

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` beside this file, however it is run

import argparse
import statistics
import tempfile
import time
from typing import Any

import numpy as np
from common import (
    RESULTS_DIR,
    VALIDATION_FRACTION,
    add_recipe_arguments,
    command_line,
    data_or_skip,
    fmt,
    limit_rows,
    machine_info,
    markdown_header,
    markdown_table,
    print_table,
    quiet_transformers,
    recipe_config,
    resolve_data,
    utc_now,
    warn_if_busy,
    write_results,
)

from textcore.classifier import Classifier
from textcore.data import LabelledTexts, file_sha256, read_labelled, stratified_split
from textcore.metrics import classification_report
from textcore.training import TrainConfig, train_classifier

NAME = "distill"
DEFAULTS = TrainConfig()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_recipe_arguments(parser)
    parser.add_argument(
        "--teacher-seeds", default="1,2,3", help="one teacher per seed, comma-separated (default: 1,2,3)"
    )
    parser.add_argument("--student-seed", type=int, default=42, help="default: %(default)s")
    parser.add_argument(
        "--distill-weight", type=float, default=DEFAULTS.distill_weight, help="default: %(default)s"
    )
    parser.add_argument(
        "--distill-temperature",
        type=float,
        default=DEFAULTS.distill_temperature,
        help="default: %(default)s",
    )
    parser.add_argument("--seed", type=int, default=42, help="the validation split (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training rows")
    parser.add_argument("--keep", type=Path, default=None, help="keep the model folders here")
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="results folder (default: bench/results)"
    )
    parser.add_argument("--name", default=NAME, help="results file stem (default: %(default)s)")
    return parser.parse_args(argv)


def recipe(args: argparse.Namespace) -> TrainConfig:
    return recipe_config(args.recipe, args.epochs)


def probabilities(folder: Path, texts: list[str], max_length: int) -> np.ndarray:
    logits = Classifier.load(folder, max_length=max_length).logits(texts)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
    return probs


def scores(labels: list[str], probs: np.ndarray, validation: LabelledTexts) -> dict[str, float]:
    report = classification_report(validation.labels, [labels[i] for i in probs.argmax(axis=1)], labels)
    return {"accuracy": report.accuracy, "macro_f1": report.macro_f1}


def train_one(
    name: str, train: LabelledTexts, validation: LabelledTexts, config: TrainConfig, folder: Path
) -> dict[str, Any]:
    print(f"--- {name}: seed {config.seed}", flush=True)
    started = time.perf_counter()
    result = train_classifier(train, config, folder, validation=validation, progress=False)
    probs = probabilities(folder, validation.texts, config.max_length)
    return {
        "model": name,
        "seed": config.seed,
        "wall_seconds": time.perf_counter() - started,
        "best_step": result.metadata["training"]["best_step"],
        "steps": result.metadata["training"]["steps"],
        **scores(result.metadata["labels"], probs, validation),
        "labels": result.metadata["labels"],
        "probabilities": probs,
    }


def run(
    args: argparse.Namespace, train: LabelledTexts, validation: LabelledTexts, root: Path
) -> list[dict[str, Any]]:
    base = recipe(args)
    seeds = [int(s) for s in args.teacher_seeds.split(",")]
    teachers = [
        train_one(f"teacher {i + 1}", train, validation, base.replace(seed=seed), root / f"teacher-{seed}")
        for i, seed in enumerate(seeds)
    ]
    labels = teachers[0]["labels"]
    mean = np.mean([t["probabilities"] for t in teachers], axis=0)
    ensemble = {"model": f"ensemble of {len(teachers)}", "seed": None, **scores(labels, mean, validation)}
    student_config = base.replace(
        seed=args.student_seed,
        teachers=tuple(str(root / f"teacher-{seed}") for seed in seeds),
        distill_weight=args.distill_weight,
        distill_temperature=args.distill_temperature,
    )
    student = train_one("student", train, validation, student_config, root / "student")
    return [*teachers, ensemble, student]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = resolve_data(args.data)
    if not data_or_skip(path, NAME):
        return 0
    quiet_transformers()
    warn_if_busy()
    machine = machine_info()
    data = read_labelled(path, args.text_column, args.label_column)
    train, validation = stratified_split(data, VALIDATION_FRACTION, args.seed)
    train = limit_rows(train, args.limit)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        results = run(args, train, validation, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-distill-") as tmp:
            results = run(args, train, validation, Path(tmp))
    teachers = [r for r in results if r["model"].startswith("teacher")]
    accuracies = [t["accuracy"] for t in teachers]
    summary = {
        "teacher_accuracy_median": statistics.median(accuracies),
        "teacher_accuracy_min": min(accuracies),
        "teacher_accuracy_max": max(accuracies),
        "ensemble_accuracy": results[-2]["accuracy"],
        "student_accuracy": results[-1]["accuracy"],
        "student_minus_teacher_median_pp": 100 * (results[-1]["accuracy"] - statistics.median(accuracies)),
    }
    for r in results:
        r.pop("probabilities", None)
        r.pop("labels", None)
    payload = {
        "benchmark": NAME,
        "created_at": utc_now(),
        "command": command_line(),
        "machine": machine,
        "settings": {
            "data": str(path),
            "data_sha256": file_sha256(path),
            "train_rows": len(train),
            "validation_rows": len(validation),
            "split_seed": args.seed,
            "recipe": args.recipe,
            "config": recipe(args).to_dict(),
            "distill_weight": args.distill_weight,
            "distill_temperature": args.distill_temperature,
        },
        "results": results,
        "summary": summary,
    }
    headers = ["model", "seed", "wall s", "best step / steps", "accuracy", "macro-F1"]
    rows = [
        [
            r["model"],
            "-" if r["seed"] is None else str(r["seed"]),
            fmt(r.get("wall_seconds")),
            f"{r['best_step']} / {r['steps']}" if "steps" in r else "-",
            fmt(r["accuracy"], 4),
            fmt(r["macro_f1"], 4),
        ]
        for r in results
    ]
    print_table("Distillation", headers, rows)
    print(
        f"student {summary['student_accuracy']:.4f} vs teachers' median "
        f"{summary['teacher_accuracy_median']:.4f} ({summary['student_minus_teacher_median_pp']:+.2f} pp); "
        f"ensemble {summary['ensemble_accuracy']:.4f}"
    )
    settings = (
        f"{path.name} ({args.text_column!r} -> {args.label_column!r}): {len(train)} training rows, "
        f"{len(validation)} validation rows (stratified {VALIDATION_FRACTION:.0%}, seed {args.seed}); recipe "
        f"{args.recipe}; distillation weight {args.distill_weight}, temperature {args.distill_temperature}"
    )
    markdown = markdown_header("Distillation: teachers, their ensemble and one student", payload, settings)
    markdown += markdown_table(headers, rows)
    markdown += (
        f"\nstudent - teachers' median: {summary['student_minus_teacher_median_pp']:+.2f} pp. Every model "
        "chose its checkpoint on the same validation rows it is scored on. The ensemble serves all the "
        "teachers (one forward pass each); the student is one model.\n"
    )
    json_path, md_path = write_results(args.name, payload, markdown, args.out)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
