"""Inference benchmark: one trained classifier folder served several ways, on the same texts, at batch 64.

Variants (each yields (n, n_labels) logits for the same texts, in input order):

    pipeline         transformers `pipeline("feature-extraction")` on the folder's encoder, then mean pooling
                     over the real tokens and the folder's linear head (head.safetensors): the
                     plain-transformers way; the reference for agreement and speed ratios
    classifier-fp32  textcore.classifier.Classifier, precision="fp32" (length-sorted batches)
    classifier-auto  Classifier, precision="auto": bf16 autocast only where the hardware has fast bf16 units
    (extras)         EXTRA_VARIANTS below: run when textcore provides them, skipped otherwise

Texts: the validation rows of the split (`stratified_split(data, 0.1, seed)`), topped up with rows drawn
from the rest of the file to `--limit` (default 2,000) so that timings are stable, in a seeded random order.
Accuracy is reported on the held-out validation rows (and on all rows, which may include rows the model was
trained on).

    python bench/inference.py --model runs/phrasebank-minilm            # full run
    python bench/inference.py --model DIR --limit 300 --repeats 1       # smoke run

Results: bench/results/inference.json and bench/results/inference.md (see bench/README.md).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub/transformers are imported

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` beside this file, however it is run

import argparse
import gc
import importlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import transformers
from common import (
    DEFAULT_DATA_TEXT,
    DEFAULT_SEED,
    RESULTS_DIR,
    VALIDATION_FRACTION,
    command_line,
    data_or_skip,
    fmt,
    load_split,
    machine_info,
    markdown_header,
    markdown_table,
    print_table,
    quiet_transformers,
    resolve_data,
    utc_now,
    warn_if_busy,
    write_results,
)
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer, pipeline

from textcore.artifacts import HEAD_FILE, read_labels, read_metadata
from textcore.classifier import Classifier
from textcore.data import LabelledTexts, file_sha256
from textcore.devices import resolve_device
from textcore.metrics import classification_report

NAME = "inference"
REFERENCE = "pipeline"

Runner = Callable[[list[str]], np.ndarray]  # texts -> (len(texts), n_labels) float32 logits in input order


class VariantUnavailable(Exception):
    """Raised by a variant's builder when what it needs is not there (the variant is skipped, not failed)."""


@dataclass(frozen=True)
class Context:
    """What every variant is built from."""

    folder: Path
    labels: list[str]
    device: torch.device
    batch_size: int
    max_length: int


@dataclass(frozen=True)
class Built:
    """A ready variant: its runner and the precision it really uses."""

    run: Runner
    precision: str
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    build: Callable[[Context], Built]
    default: bool = True  # run without being named in --variants


# ------------------------------------------------------------------------------------------------ variants


def build_pipeline(ctx: Context) -> Built:
    """The plain-transformers way: feature-extraction pipeline, mean pooling, the folder's linear head."""
    encoder = AutoModel.from_pretrained(str(ctx.folder), use_safetensors=True, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(ctx.folder))
    head = load_file(str(ctx.folder / HEAD_FILE))
    weight, bias = head["weight"].float(), head["bias"].float()
    # transformers < 5 takes framework="pt"; 5 removed TensorFlow and the argument means nothing there
    framework: dict[str, Any] = {"framework": "pt"} if int(transformers.__version__.split(".")[0]) < 5 else {}
    extractor = pipeline(
        "feature-extraction",
        model=encoder,
        tokenizer=tokenizer,
        device=ctx.device,
        batch_size=ctx.batch_size,
        return_tensors=True,
        # a bare max_length= is silently ignored by this pipeline; through tokenize_kwargs it truncates
        tokenize_kwargs={"truncation": True, "max_length": ctx.max_length},
        **framework,
    )

    def run(texts: list[str]) -> np.ndarray:
        # the pipeline returns each text's hidden states padded to its batch's longest row: pool real tokens
        lengths = [
            len(ids) for ids in tokenizer(texts, truncation=True, max_length=ctx.max_length)["input_ids"]
        ]
        with torch.inference_mode():
            hidden = extractor(texts)
            pooled = torch.stack([h[0, :n].float().mean(dim=0) for h, n in zip(hidden, lengths, strict=True)])
            return (pooled @ weight.T + bias).numpy()

    return Built(run, "fp32", {"pipeline_class": type(extractor).__name__})


def build_classifier(precision: str) -> Callable[[Context], Built]:
    def build(ctx: Context) -> Built:
        classifier = Classifier.load(
            ctx.folder,
            device=str(ctx.device),
            precision=precision,
            max_length=ctx.max_length,
            batch_size=ctx.batch_size,
        )
        used = "bf16 autocast" if classifier.bf16 else "fp32"
        return Built(classifier.logits, used, {"requested_precision": precision})

    return build


def from_textcore(module: str, attribute: str, **options: Any) -> Callable[[Context], Built]:
    """A variant served by a textcore class that may or may not exist yet.

    Contract: `<module>.<attribute>.load(folder, device=, max_length=, batch_size=, **options)` returns an
    object with `logits(texts) -> (n, n_labels) float32 ndarray` (like `Classifier`) and, optionally, a
    `precision` attribute describing what it runs in. Missing module or attribute: the variant is skipped.
    """

    def build(ctx: Context) -> Built:
        try:
            factory = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as exc:
            raise VariantUnavailable(f"{module}.{attribute} is not available ({exc})") from exc
        served = factory.load(
            ctx.folder,
            device=str(ctx.device),
            max_length=ctx.max_length,
            batch_size=ctx.batch_size,
            **options,
        )
        return Built(lambda texts: np.asarray(served.logits(texts)), str(getattr(served, "precision", "?")))

    return build


BUILTIN_VARIANTS = [
    Variant(
        REFERENCE, "transformers feature-extraction pipeline + mean pooling + linear head", build_pipeline
    ),
    Variant("classifier-fp32", "textcore Classifier, precision=fp32", build_classifier("fp32")),
    Variant("classifier-auto", "textcore Classifier, precision=auto", build_classifier("auto")),
]

# The hook for more ways of serving the same folder. Add an entry here; a builder raises VariantUnavailable
# when what it needs is missing, and that variant is reported as skipped. `default=False` entries run only
# when named in --variants.
EXTRA_VARIANTS = [
    # bf16 forced: emulated (correct but slow) on CPUs without bf16 units, hence opt-in
    Variant(
        "classifier-bf16",
        "textcore Classifier, precision=bf16 (forced)",
        build_classifier("bf16"),
        default=False,
    ),
    # the ONNX Runtime backend (fp32, CPU); skipped where onnxruntime is not installed
    Variant(
        "onnx", "ONNX Runtime backend from textcore", from_textcore("textcore.onnx_backend", "OnnxClassifier")
    ),
]

ALL_VARIANTS = {v.name: v for v in [*BUILTIN_VARIANTS, *EXTRA_VARIANTS]}


# ------------------------------------------------------------------------------------------------ the run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, required=True, help="trained classifier folder (textcore train)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help=f"PhraseBank CSV (default: {DEFAULT_DATA_TEXT} relative to the repository root)",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="split and draw (default: %(default)s)"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=2000,
        help="texts to time: the validation rows topped up from the rest (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="default: %(default)s")
    parser.add_argument("--max-length", type=int, default=256, help="tokens per text (default: %(default)s)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per variant (default: %(default)s)"
    )
    parser.add_argument(
        "--warmup-texts",
        type=int,
        default=256,
        help="texts in the untimed warm-up call (default: %(default)s)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: %(default)s)")
    parser.add_argument(
        "--variants",
        default=None,
        help=f"comma-separated names (default: those marked default); known: {', '.join(ALL_VARIANTS)}",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="results folder (default: bench/results)"
    )
    parser.add_argument("--name", default=NAME, help="results file stem (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.limit < 1 or args.repeats < 1 or args.batch_size < 1:
        parser.error("--limit, --repeats and --batch-size must be at least 1")
    names = (
        [v.name for v in ALL_VARIANTS.values() if v.default]
        if args.variants is None
        else [n.strip() for n in args.variants.split(",") if n.strip()]
    )
    unknown = [n for n in names if n not in ALL_VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown}; known: {', '.join(ALL_VARIANTS)}")
    args.variant_names = [REFERENCE, *[n for n in names if n != REFERENCE]]  # the reference always runs first
    return args


def select_texts(data_path: Path, seed: int, limit: int) -> tuple[LabelledTexts, np.ndarray, int]:
    """The texts to time and a mask of the held-out (validation) ones, in a seeded random order."""
    _, train, validation = load_split(data_path, seed)
    n_val = min(limit, len(validation))
    rows = LabelledTexts(
        validation.texts[:n_val] + train.texts[: limit - n_val],
        validation.labels[:n_val] + train.labels[: limit - n_val],
    )
    held_out = np.arange(len(rows)) < n_val
    order = np.random.default_rng(seed).permutation(len(rows))
    return rows.subset(order.tolist()), held_out[order], len(validation)


def split_check(folder: Path, data_path: Path, seed: int, n_validation: int) -> str:
    """Whether the model's recorded training run held out the same validation rows (so accuracy is honest)."""
    meta = read_metadata(folder)
    hyper, data = meta.get("hyperparameters", {}), meta.get("data", {})
    if not hyper:
        return "unknown: the model folder has no training metadata"
    problems = []
    if hyper.get("seed") != seed:
        problems.append(f"trained with seed {hyper.get('seed')}, split here with seed {seed}")
    if hyper.get("validation_fraction") != VALIDATION_FRACTION:
        problems.append(f"trained with validation_fraction {hyper.get('validation_fraction')}")
    if data.get("validation", {}).get("rows") not in (None, n_validation):
        problems.append(f"its validation had {data['validation']['rows']} rows, here {n_validation}")
    sha = data.get("file", {}).get("sha256")
    if sha is not None and sha != file_sha256(data_path):
        problems.append("trained on a different data file")
    return "matches the model's training split" if not problems else "; ".join(problems)


def measure(run: Runner, texts: list[str], repeats: int, warmup: int) -> tuple[np.ndarray, list[float]]:
    """One untimed warm-up call, then `repeats` timed calls on all texts; the logits of the last."""
    run(texts[: max(1, warmup)])
    times: list[float] = []
    logits = np.empty(0)
    for _ in range(repeats):
        started = time.perf_counter()
        logits = run(texts)
        times.append(time.perf_counter() - started)
    return np.asarray(logits, dtype=np.float32), times


def score(
    logits: np.ndarray,
    reference: np.ndarray | None,
    rows: LabelledTexts,
    held_out: np.ndarray,
    labels: list[str],
) -> dict[str, Any]:
    predicted = [labels[i] for i in logits.argmax(axis=1)]
    kept = np.flatnonzero(held_out)
    held = classification_report([rows.labels[i] for i in kept], [predicted[i] for i in kept], labels)
    every = classification_report(rows.labels, predicted, labels)
    out: dict[str, Any] = {
        "accuracy_held_out": held.accuracy,
        "macro_f1_held_out": held.macro_f1,
        "n_held_out": held.n,
        "accuracy_all": every.accuracy,
        "n_all": every.n,
    }
    if reference is not None:
        out["agreement_with_reference"] = float(np.mean(logits.argmax(axis=1) == reference.argmax(axis=1)))
        out["max_abs_logit_diff"] = float(np.max(np.abs(logits - reference)))
    return out


def render(payload: dict[str, Any]) -> tuple[list[str], list[list[str]], str]:
    headers = [
        "variant",
        "precision",
        "texts/s",
        "vs pipeline",
        "agreement",
        "max abs Δlogit",
        "acc held-out",
        "macro-F1 held-out",
        "acc all rows",
    ]
    rows = []
    for name, v in payload["variants"].items():
        rows.append(
            [
                name,
                v["precision"],
                fmt(v["texts_per_second"]),
                f"{v['speed_vs_reference']:.2f}x",
                f"{100 * v['agreement_with_reference']:.2f}%",
                f"{v['max_abs_logit_diff']:.1e}",
                fmt(v["accuracy_held_out"], 4),
                fmt(v["macro_f1_held_out"], 4),
                fmt(v["accuracy_all"], 4),
            ]
        )
    s = payload["settings"]
    settings = (
        f"model {s['model']}; {s['texts']} texts ({s['held_out']} held-out validation rows, seed "
        f"{s['seed']}), batch {s['batch_size']}, max length {s['max_length']}, median of {s['repeats']} "
        f"run(s) after a warm-up on {s['warmup_texts']} texts; held-out check: {s['split_check']}"
    )
    return headers, rows, settings


def markdown(payload: dict[str, Any]) -> str:
    headers, rows, settings = render(payload)
    parts = [
        markdown_header("Inference: one classifier, several ways of serving it", payload, settings),
        markdown_table(headers, rows),
    ]
    if payload["skipped"]:
        parts.append("\nSkipped: " + "; ".join(f"{k}: {v}" for k, v in payload["skipped"].items()) + ".\n")
    parts.append(
        "\ntexts/s: texts over the median wall time of one call on all of them (tokenisation included). "
        "agreement: share of texts with the same argmax label as the pipeline's fp32 logits; max abs Δlogit "
        "is against those logits too. acc held-out: accuracy on the validation rows of the split; acc all "
        "rows may include rows the model was trained on.\n"
    )
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_path = resolve_data(args.data)
    if not data_or_skip(data_path, NAME):
        return 0
    folder = args.model.expanduser().resolve()
    if not (folder / HEAD_FILE).is_file():
        print(
            f"{NAME}: skipped: {folder} is not a trained classifier folder (no {HEAD_FILE}). "
            "Train one with:\n"
            f"  textcore train --data {DEFAULT_DATA_TEXT} --text-column sentence --label-column label "
            f"--output {args.model}"
        )
        return 0
    quiet_transformers()
    warn_if_busy()
    machine = machine_info()
    labels, multi_label = read_labels(folder)
    if multi_label:
        print(f"{NAME}: {folder} is a multi-label classifier; this benchmark compares single-label argmax")
        return 2
    rows, held_out, n_validation = select_texts(data_path, args.seed, args.limit)
    check = split_check(folder, data_path, args.seed, n_validation)
    if check != "matches the model's training split":
        print(f"warning: held-out accuracy may not be held out: {check}", file=sys.stderr)
    ctx = Context(folder, labels, resolve_device(args.device), args.batch_size, args.max_length)
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    reference: np.ndarray | None = None
    reference_speed = 0.0
    for name in args.variant_names:
        variant = ALL_VARIANTS[name]
        try:
            built = variant.build(ctx)
        except VariantUnavailable as exc:
            skipped[name] = str(exc)
            print(f"--- {name}: skipped: {exc}")
            continue
        print(f"--- {name}: {variant.description}; runs in {built.precision}", flush=True)
        logits, times = measure(built.run, rows.texts, args.repeats, args.warmup_texts)
        speed = len(rows) / statistics.median(times)
        if reference is None:
            reference, reference_speed = logits, speed
        results[name] = {
            "description": variant.description,
            "precision": built.precision,
            **built.notes,
            "seconds": times,
            "texts_per_second": speed,
            "speed_vs_reference": speed / reference_speed,
            **score(logits, reference, rows, held_out, labels),
        }
        del built
        gc.collect()
    payload: dict[str, Any] = {
        "benchmark": NAME,
        "created_at": utc_now(),
        "command": command_line(),
        "machine": machine,
        "settings": {
            "model": str(folder),
            "model_metadata": {
                k: read_metadata(folder).get(k)
                for k in ("base_model", "created_at", "validation_metrics", "hyperparameters")
            },
            "data": str(data_path),
            "data_sha256": file_sha256(data_path),
            "seed": args.seed,
            "limit": args.limit,
            "texts": len(rows),
            "held_out": int(held_out.sum()),
            "validation_rows": n_validation,
            "validation_fraction": VALIDATION_FRACTION,
            "split_check": check,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "repeats": args.repeats,
            "warmup_texts": min(args.warmup_texts, len(rows)),
            "device": str(ctx.device),
            "reference": REFERENCE,
        },
        "variants": results,
        "skipped": skipped,
    }
    headers, table_rows, settings = render(payload)
    print_table(f"Inference: {settings}", headers, table_rows)
    json_path, md_path = write_results(args.name, payload, markdown(payload), args.out)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
