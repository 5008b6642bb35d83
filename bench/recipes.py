"""Recipe variants side by side: the same split, the same seeds, one run.

A recipe change is worth making only when it wins against the current recipe on several training seeds, not
on one lucky run. This benchmark trains the base recipe and every `--variant` once per `--seeds` seed, in
turn (seed by seed, so a slow spell of the machine hits every variant alike), on one fixed split:
`stratified_split(data, 0.1, --split-seed)`. It reports each run, each variant's median and mean accuracy, and
its paired difference from the base recipe on the same seed.

Every model selects its checkpoint on the validation rows and is scored on them, so each figure is slightly
optimistic by the same selection. The paired differences remove the seed's share of the noise, not the
validation sample's: with n validation rows, one standard error of an accuracy near p is sqrt(p(1-p)/n).

With `--holdout` the split's 10% is a test set instead: each run is given only the other 90%, carves its own
validation rows from them (`validation_fraction`, its training seed), and is scored on the test rows it
never saw. That is the protocol for a change that uses the validation rows differently, such as `refit`.

With `--folds K` the split is K-fold cross-validation instead: `stratified_folds(data, K, --split-seed)` holds
each row out once (all rows of one text, case and spacing aside, in the same fold), every variant and seed
trains once per fold (fold by fold), and the pooled accuracy over all folds is scored on every row of the
file: ten times the rows of the 10% split, so about a third of its standard error. Paired differences pair
the same fold and seed.

    python bench/recipes.py --variant no-decay=layer_lr_decay:1.0         # PhraseBank, TrainConfig defaults
    python bench/recipes.py --recipe intents --data ../shared/data/banking77/train.csv --text-column text \\
        --label-column intent --variant no-decay=layer_lr_decay:1.0 --name recipes-banking77
    python bench/recipes.py --holdout --variant refit=refit:true --name recipes-phrasebank-refit
    python bench/recipes.py --folds 5 --seeds 42 --variant smooth=label_smoothing:0.1  # every row scored once
    python bench/recipes.py --variant smooth=label_smoothing:0.1 --seeds 1 --epochs 1 --limit 300 \\
        --out /tmp/bench-smoke                                            # smoke run

A variant is `NAME=FIELD:VALUE[,FIELD:VALUE...]` over `textcore.training.TrainConfig` fields, and
`weights:COLUMN`, which trains on the same rows with per-row loss weights read from COLUMN of the data file
(PhraseBank: `weights:agreement`, the share of annotators who agreed on the label). `--set FIELD:VALUE,...`
changes the base recipe itself (`--recipe intents --set blend_frozen:false`: the intent recipe without its
frozen view, as it was before that was on).

Results: bench/results/recipes.json and bench/results/recipes.md (`--name` changes the stem).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub/transformers are imported

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` beside this file, however it is run

import argparse
import dataclasses
import math
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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

from textcore.baseline import frozen_embedding_baseline
from textcore.classifier import Classifier
from textcore.data import LabelledTexts, file_sha256, read_labelled, stratified_folds, stratified_split
from textcore.embeddings import Encoder
from textcore.evaluation import evaluate_classifier
from textcore.training import TrainConfig, train_classifier

NAME = "recipes"
BASE = "base"
FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
WEIGHTS = "weights"  # not a TrainConfig field: the data file's column of per-row loss weights


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """`NAME=FIELD:VALUE,...` -> (NAME, {FIELD: typed VALUE}); the types are TrainConfig's."""
    name, sep, spec = text.partition("=")
    if not sep or not name or not spec or name == BASE:
        raise argparse.ArgumentTypeError(f"expected NAME=FIELD:VALUE[,FIELD:VALUE...] (NAME not {BASE!r})")
    return name, parse_changes(spec)


def parse_changes(spec: str) -> dict[str, Any]:
    """`FIELD:VALUE,...` -> {FIELD: typed VALUE}; the types are TrainConfig's."""
    changes: dict[str, Any] = {}
    for item in spec.split(","):
        field, sep, value = item.partition(":")
        kind = "str" if field == WEIGHTS else FIELD_TYPES.get(field)
        if not sep or kind is None:
            raise argparse.ArgumentTypeError(
                f"{item!r}: expected FIELD:VALUE with a TrainConfig field or {WEIGHTS}:COLUMN"
            )
        if kind == "bool":
            if value not in ("true", "false"):
                raise argparse.ArgumentTypeError(f"{field}: expected true or false; found {value!r}")
            changes[field] = value == "true"
        elif kind in ("int", "float"):
            changes[field] = int(value) if kind == "int" else float(value)
        elif kind == "str":
            changes[field] = value
        else:
            raise argparse.ArgumentTypeError(f"{field}: not settable here (type {kind})")
    return changes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_recipe_arguments(parser)  # the base recipe, and the data
    parser.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        default=[],
        help="NAME=FIELD:VALUE[,FIELD:VALUE...], changes to the base recipe (FIELD: a TrainConfig field, or "
        f"{WEIGHTS} with a column of per-row loss weights); repeat for more",
    )
    parser.add_argument(
        "--set",
        type=parse_changes,
        default={},
        metavar="FIELD:VALUE[,FIELD:VALUE...]",
        help="changes to the base recipe itself (e.g. blend_frozen:false for the intent recipe as it was "
        "before it had a frozen view)",
    )
    parser.add_argument("--seeds", default="42,1,2", help="training seeds, comma-separated (default: 42,1,2)")
    parser.add_argument("--split-seed", type=int, default=42, help="the validation split (default: 42)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training rows")
    parser.add_argument(
        "--folds",
        type=int,
        default=0,
        help="K >= 2: K-fold cross-validation (each row scored once, every run once per fold) instead of one "
        "10%% split (default: one split)",
    )
    parser.add_argument(
        "--holdout",
        action="store_true",
        help="score on the split's 10%% as a test set; each run carves its own validation rows from the rest",
    )
    parser.add_argument(
        "--frozen-baseline",
        action="store_true",
        help="also score a logistic regression on the base model's frozen embeddings on the same split (a "
        "reference whose figure on another test set may be known, to place this split against it)",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="results folder (default: bench/results)"
    )
    parser.add_argument("--name", default=NAME, help="results file stem (default: %(default)s)")
    args = parser.parse_args(argv)
    names = [name for name, _ in args.variant]
    if len(set(names)) != len(names):
        parser.error(f"variant names must differ; found {names}")
    if args.folds == 1 or args.folds < 0:
        parser.error(f"--folds: expected 0 (one split) or an integer >= 2; found {args.folds}")
    return args


def base_recipe(args: argparse.Namespace) -> TrainConfig:
    base = recipe_config(args.recipe, args.epochs)
    if WEIGHTS in args.set:
        raise SystemExit(f"--set: {WEIGHTS} is a variant's change, not the base recipe's")
    return base.replace(**args.set)


def train_one(
    variant: str,
    train: LabelledTexts,
    scored: LabelledTexts,
    config: TrainConfig,
    folder: Path,
    *,
    holdout: bool,
    fold: int | None = None,
) -> dict[str, Any]:
    """Train one model and score it: on its validation rows (`scored`), or with `holdout` on `scored` as a
    test set, the run carving its own validation rows from `train`."""
    print(f"--- {variant}: seed {config.seed}" + ("" if fold is None else f", fold {fold}"), flush=True)
    started = time.perf_counter()
    result = train_classifier(train, config, folder, validation=None if holdout else scored, progress=False)
    training = result.metadata["training"]
    record = {
        "variant": variant,
        "seed": config.seed,
        "fold": fold,
        "scored_rows": len(scored),
        "wall_seconds": time.perf_counter() - started,
        "best_step": training["best_step"],
        "steps": training["steps"],
        "accuracy": result.metrics["accuracy"],
        "macro_f1": result.metrics["macro_f1"],
    }
    view = result.metadata.get("frozen_view")
    if view is not None:  # the same run scored with and without its frozen view (blend_frozen)
        record |= {
            "blend_weight": view["blend_weight"],
            "accuracy_without_view": view["validation_accuracy_by_weight"]["0.00"],
        }
    if holdout:
        model = Classifier.load(folder, max_length=config.max_length)
        test = evaluate_classifier(model, scored)
        record |= {
            "validation_accuracy": record["accuracy"],
            "validation_macro_f1": record["macro_f1"],
            "accuracy": test["accuracy"],
            "macro_f1": test["macro_f1"],
        }
        if view is not None:
            model.frozen_view = None
            record["accuracy_without_view"] = evaluate_classifier(model, scored)["accuracy"]
    return record


def frozen_baseline(config: TrainConfig, splits: list[Split]) -> dict[str, Any]:
    """The base model untouched: its embeddings of each split's training rows fit a logistic regression,
    scored on that split's rows (over folds: accuracy pooled, macro-F1 the mean)."""
    encoder = Encoder.from_pretrained(config.base_model, max_length=config.max_length)
    per_split: list[dict[str, Any]] = []
    for split in splits:
        report = frozen_embedding_baseline(encoder, split.train, split.scored)
        per_split.append(
            {
                "fold": split.fold,
                "scored_rows": len(split.scored),
                "accuracy": report.accuracy,
                "macro_f1": report.macro_f1,
            }
        )
    return {
        "model": config.base_model,
        "max_length": config.max_length,
        "accuracy": pooled_accuracy(per_split),
        "macro_f1": statistics.fmean(r["macro_f1"] for r in per_split),
        "per_split": per_split,
    }


def paired_key(record: dict[str, Any]) -> tuple[int | None, int]:
    """Runs that share a split (fold) and a training seed are compared with each other."""
    return record.get("fold"), record["seed"]


def pooled_accuracy(runs: list[dict[str, Any]]) -> float:
    """Right answers over scored rows, all runs together: over K folds, the accuracy on every row."""
    right = sum(float(r["accuracy"]) * int(r["scored_rows"]) for r in runs)
    return right / sum(int(r["scored_rows"]) for r in runs)


def summarise(runs: list[dict[str, Any]], variants: list[str]) -> dict[str, dict[str, Any]]:
    """Per variant: median, mean and pooled accuracy and macro-F1; against the base, paired differences (same
    fold and seed)."""
    base = {paired_key(r): r for r in runs if r["variant"] == BASE}
    summary: dict[str, dict[str, Any]] = {}
    for variant in variants:
        mine = [r for r in runs if r["variant"] == variant]
        accuracy = [r["accuracy"] for r in mine]
        entry: dict[str, Any] = {
            "runs": len(mine),
            "accuracy_median": statistics.median(accuracy),
            "accuracy_mean": statistics.fmean(accuracy),
            "accuracy_pooled": pooled_accuracy(mine),
            "macro_f1_median": statistics.median(r["macro_f1"] for r in mine),
            "wall_seconds_median": statistics.median(r["wall_seconds"] for r in mine),
        }
        if variant != BASE:
            paired_base = [base[paired_key(r)] for r in mine]  # the base runs first, split by split
            diffs = [100 * (r["accuracy"] - b["accuracy"]) for r, b in zip(mine, paired_base, strict=True)]
            entry |= {
                "diff_pp_pooled": 100 * (pooled_accuracy(mine) - pooled_accuracy(paired_base)),
                "diff_pp_mean": statistics.fmean(diffs),
                "diff_pp_min": min(diffs),
                "diff_pp_max": max(diffs),
                "wins": sum(d > 0 for d in diffs),
                "ties": sum(d == 0 for d in diffs),
                "losses": sum(d < 0 for d in diffs),
            }
        summary[variant] = entry
    return summary


@dataclass(frozen=True)
class Split:
    """One split of the data: the rows runs train on, and the rows they are scored on."""

    fold: int | None  # None: the single 10% split
    train: LabelledTexts
    scored: LabelledTexts


def splits_of(data: LabelledTexts, args: argparse.Namespace) -> list[Split]:
    """The single stratified 10% split, or with `--folds K` the K folds; training rows cut to `--limit`.
    Both depend on the labels and the split seed only, so files that differ in a weight column split alike."""
    if args.folds:
        folds = stratified_folds(data, args.folds, args.split_seed)
        return [Split(i, limit_rows(rest, args.limit), held) for i, (rest, held) in enumerate(folds)]
    train, validation = stratified_split(data, VALIDATION_FRACTION, args.split_seed)
    return [Split(None, limit_rows(train, args.limit), validation)]


def run(
    args: argparse.Namespace,
    splits: list[Split],
    weighted: dict[str, list[Split]],
    root: Path,
) -> Iterator[dict[str, Any]]:
    """Each run's record as soon as it is done: split by split, seed by seed, the base recipe first.
    `weighted` holds the same splits with the weights of each column a variant names; a variant without one
    trains on `splits`, unweighted."""
    base = base_recipe(args)
    variants = [(BASE, base, None)]
    for name, changes in args.variant:
        fields = {k: v for k, v in changes.items() if k != WEIGHTS}
        variants.append((name, base.replace(**fields), changes.get(WEIGHTS)))
    for index, split in enumerate(splits):
        for seed in (int(s) for s in args.seeds.split(",")):
            for name, config, column in variants:
                seeded = config.replace(seed=seed)
                suffix = "" if split.fold is None else f"-{split.fold}"
                folder = root / f"{name}-{seed}{suffix}"
                rows = weighted[column][index].train if column else split.train
                yield train_one(
                    name, rows, split.scored, seeded, folder, holdout=args.holdout, fold=split.fold
                )


@dataclass(frozen=True)
class Setting:
    """What every report of one benchmark run shares."""

    path: Path
    data_sha256: str
    machine: dict[str, Any]
    splits: list[Split]
    started: float


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = resolve_data(args.data)
    if not data_or_skip(path, NAME):
        return 0
    quiet_transformers()
    warn_if_busy()
    machine = machine_info()
    splits = splits_of(read_labelled(path, args.text_column, args.label_column), args)
    setting = Setting(path, file_sha256(path), machine, splits, time.perf_counter())
    weighted = {
        column: splits_of(read_labelled(path, args.text_column, args.label_column, column), args)
        for column in {changes[WEIGHTS] for _, changes in args.variant if WEIGHTS in changes}
    }
    if any(
        mine.train.texts != split.train.texts
        for column_splits in weighted.values()
        for mine, split in zip(column_splits, splits, strict=True)
    ):
        raise SystemExit("the weighted rows differ from the unweighted ones; expected the same split")
    # the reference first (it takes seconds per split), so that a stopped run keeps it too
    frozen = frozen_baseline(base_recipe(args), splits) if args.frozen_baseline else None
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-recipes-") as tmp:
        for record in run(args, splits, weighted, Path(tmp)):
            runs.append(record)
            report(args, setting, runs, frozen, complete=False)  # a stopped run keeps what it measured
    report(args, setting, runs, frozen, complete=True)
    return 0


def report(
    args: argparse.Namespace,
    setting: Setting,
    runs: list[dict[str, Any]],
    frozen: dict[str, Any] | None,
    *,
    complete: bool,
) -> None:
    """Write the results files (and print the tables once `complete`); a partial report says so."""
    path, splits, folds = setting.path, setting.splits, bool(args.folds)
    variants = [
        v for v in [BASE, *(name for name, _ in args.variant)] if any(r["variant"] == v for r in runs)
    ]
    summary = summarise(runs, variants)
    n = sum(len(split.scored) for split in splits)  # over K folds: every row of the file
    p = summary[BASE]["accuracy_pooled" if folds else "accuracy_median"]
    standard_error_pp = 100 * math.sqrt(p * (1 - p) / n)
    payload = {
        "benchmark": NAME,
        "created_at": utc_now(),
        "command": command_line(),
        "machine": setting.machine,
        "complete": complete,
        "wall_seconds": time.perf_counter() - setting.started,
        "settings": {
            "data": str(path),
            "data_sha256": setting.data_sha256,
            "train_rows": None if folds else len(splits[0].train),
            "scored_rows": n,
            "folds": args.folds,
            "fold_train_rows": [len(split.train) for split in splits] if folds else None,
            "fold_rows": [len(split.scored) for split in splits] if folds else None,
            "split_seed": args.split_seed,
            "holdout": args.holdout,
            "recipe": args.recipe,
            "base": base_recipe(args).to_dict(),
            "variants": dict(args.variant),
        },
        "runs": runs,
        "summary": summary,
        "validation_standard_error_pp": standard_error_pp,
        "frozen_baseline": frozen,
    }
    scored = "test" if args.holdout else "validation"
    run_headers = [
        "variant",
        "seed",
        "wall s",
        "best step / steps",
        f"{scored} accuracy",
        f"{scored} macro-F1",
    ]
    run_rows = [
        [
            r["variant"],
            str(r["seed"]),
            fmt(r["wall_seconds"]),
            f"{r['best_step']} / {r['steps']}",
            fmt(r["accuracy"], 4),
            fmt(r["macro_f1"], 4),
        ]
        for r in runs
    ]
    if folds:
        run_headers.insert(1, "fold")
        for row, r in zip(run_rows, runs, strict=True):
            row.insert(1, str(r["fold"]))
    if args.holdout:  # each run's own validation figure, beside its test figure
        run_headers.append("own validation accuracy")
        for row, r in zip(run_rows, runs, strict=True):
            row.append(fmt(r["validation_accuracy"], 4))
    if any("blend_weight" in r for r in runs):  # blend_frozen runs: the weight, and the run without the view
        run_headers += ["blend weight", f"{scored} accuracy without the view"]
        for row, r in zip(run_rows, runs, strict=True):
            row.extend([fmt(r.get("blend_weight"), 2), fmt(r.get("accuracy_without_view"), 4)])
    headers = ["variant", "changes", "median acc", "mean acc", "median macro-F1",
               "vs base pp (mean, min..max)", "wins / ties / losses"]  # fmt: skip
    changes = dict(args.variant)
    rows = []
    for variant in variants:
        s = summary[variant]
        spec = ", ".join(f"{k}={v}" for k, v in changes.get(variant, {}).items()) or args.recipe
        paired = (
            f"{s['diff_pp_mean']:+.2f} ({s['diff_pp_min']:+.2f}..{s['diff_pp_max']:+.2f})"
            if variant != BASE
            else "-"
        )
        record = f"{s['wins']} / {s['ties']} / {s['losses']}" if variant != BASE else "-"
        rows.append([variant, spec, fmt(s["accuracy_median"], 4), fmt(s["accuracy_mean"], 4),
                     fmt(s["macro_f1_median"], 4), paired, record])  # fmt: skip
        if folds:
            rows[-1].insert(4, fmt(s["accuracy_pooled"], 4))
    if folds:
        headers.insert(4, "pooled acc")
    if complete:
        print_table("Runs", run_headers, run_rows)
        print_table("Recipes", headers, rows)
        print(f"one {scored} standard error: {standard_error_pp:.2f} pp ({n} rows)")
        if frozen is not None:
            print(f"frozen-embedding logistic regression: accuracy {frozen['accuracy']:.4f}")
    layout = (
        f"{args.folds} stratified folds of {min(len(x.scored) for x in splits)}-"
        f"{max(len(x.scored) for x in splits)} {scored} rows each, {n} in all (seed {args.split_seed}), each "
        f"trained on the other {len(splits[0].train)}-odd rows"
        if folds
        else f"{len(splits[0].train)} training rows, {n} {scored} rows (stratified "
        f"{VALIDATION_FRACTION:.0%}, seed {args.split_seed})"
    )
    settings = (
        f"{path.name} ({args.text_column!r} -> {args.label_column!r}): {layout}; base recipe {args.recipe}; "
        f"training seeds {args.seeds}"
    )
    selection = (
        "Every run carved its own validation rows from the training rows, chose its checkpoint on them, and "
        "is scored on the test rows, which no run saw."
        if args.holdout
        else "Every model chose its checkpoint on the validation rows it is scored on."
    )
    markdown = markdown_header("Recipe variants side by side", payload, settings)
    markdown += markdown_table(headers, rows)
    markdown += "\n" + markdown_table(run_headers, run_rows)
    markdown += (
        f"\nvs base: the variant's {scored} accuracy minus the base recipe's on the same training seed"
        f"{' and fold' if folds else ''}, in points. {selection} "
        + ("Pooled: right answers over scored rows, all of a variant's runs together. " if folds else "")
        + f"One standard error of an accuracy near the base's {'pooled' if folds else 'median'} one on these "
        f"rows: {standard_error_pp:.2f} pp ({n} rows). The paired differences share the sample, so it moves "
        "both sides alike; every figure here carries that error against any other test set.\n"
    )
    if frozen is not None:
        markdown += (
            f"\nLogistic regression on the frozen embeddings of {frozen['model']} (standardised, "
            f"max length {frozen['max_length']}), same split: accuracy {frozen['accuracy']:.4f}, macro-F1 "
            f"{frozen['macro_f1']:.4f}"
        )
        if folds:
            per_fold = " / ".join(f"{r['accuracy']:.4f}" for r in frozen["per_split"])
            markdown += f" (accuracy per fold: {per_fold})"
        markdown += ".\n"
    if not complete:
        markdown += (
            f"\n**Partial**: {len(runs)} runs done when this was written; the benchmark did not finish.\n"
        )
    json_path, md_path = write_results(args.name, payload, markdown, args.out)
    print(f"wrote {json_path} and {md_path}" if complete else f"({len(runs)} runs so far in {json_path})")


if __name__ == "__main__":
    raise SystemExit(main())
