"""Fine-tuning benchmark: our trainer against a plain `transformers.Trainer` on the same data and settings.

Both sides fine-tune the same base model (default `minilm`) on the same Financial PhraseBank rows and are
scored on the same stratified validation split (`textcore.data.stratified_split(data, 0.1, seed)`), with the
same epochs, batch size, learning rate, warmup ratio, weight decay, max length and seed. Our trainer keeps its
own defaults for what the baseline has no equivalent of (layer-wise LR decay, head LR, frozen word embeddings,
length-grouped batches, best-checkpoint selection); the full config is recorded. Each side runs in its own
subprocess so that its peak RSS is its own.

    python bench/finetune.py                           # full run: 4 epochs on all training rows, both sides
    python bench/finetune.py --limit 200 --epochs 1    # smoke run
    python bench/finetune.py --sides ours,lora,adalora,fgm,setfit --name finetune-methods  # the methods

The method sides are our trainer with one change each: `lora` / `adalora` train peft adapters only (at
`--adapter-learning-rate`), `fgm` / `pgd` add adversarial training on the word embeddings, and `setfit` is the
few-shot path trained on `--few-shot` rows per class drawn from the training rows. Every side of ours also
reports trainable parameters, the saved folder's size, and accuracy on the validation rows with typos
(`textcore.noise.add_typos`, `--typo-rate` of the words edited), the robustness figure.

Results: bench/results/finetune.json and bench/results/finetune.md (see bench/README.md).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub/transformers are imported

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` beside this file, however it is run

import argparse
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
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
    limit_rows,
    load_split,
    machine_info,
    markdown_header,
    markdown_table,
    peak_rss_mib,
    print_table,
    quiet_transformers,
    resolve_data,
    utc_now,
    warn_if_busy,
    write_results,
)
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

import textcore.training.loop as loop_module
from textcore.classifier import Classifier
from textcore.data import LabelledTexts, file_sha256, sample_per_class
from textcore.devices import resolve_device, use_bf16
from textcore.metrics import classification_report
from textcore.models import resolve_model
from textcore.noise import add_typos
from textcore.training import TrainConfig, train_classifier, train_few_shot
from textcore.training.tracking import read_metrics

NAME = "finetune"
SIDES = ("ours", "trainer")
# our trainer with one change each: TrainConfig fields, or the few-shot path
METHODS: dict[str, dict[str, Any]] = {
    "lora": {"adapter": "lora"},
    "adalora": {"adapter": "adalora"},
    "fgm": {"adversarial": "fgm"},
    "pgd": {"adversarial": "pgd"},
    "setfit": {"task": "setfit"},
}
ALL_SIDES = (*SIDES, *METHODS)
EVAL_BATCH_SIZE = 64  # our trainer evaluates in batches of 64; the Trainer side predicts with the same size
DEFAULTS = TrainConfig()
RECORDED_ARGUMENTS = {
    "num_train_epochs",
    "per_device_train_batch_size",
    "learning_rate",
    "warmup_steps",
    "warmup_ratio",
    "weight_decay",
    "lr_scheduler_type",
    "optim",
    "max_grad_norm",
    "seed",
    "bf16",
    "fp16",
    "use_cpu",
    "group_by_length",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help=f"PhraseBank CSV (default: {DEFAULT_DATA_TEXT} relative to the repository root)",
    )
    parser.add_argument(
        "--base-model", default=DEFAULTS.base_model, help="alias or folder (default: %(default)s)"
    )
    parser.add_argument("--epochs", type=int, default=4, help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=16, help="default: %(default)s")
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=DEFAULTS.learning_rate,
        help="peak LR of both sides (default: TrainConfig's, %(default)s)",
    )
    parser.add_argument(
        "--warmup-ratio", type=float, default=DEFAULTS.warmup_ratio, help="default: %(default)s"
    )
    parser.add_argument(
        "--weight-decay", type=float, default=DEFAULTS.weight_decay, help="default: %(default)s"
    )
    parser.add_argument(
        "--max-length", type=int, default=DEFAULTS.max_length, help="tokens per text (default: %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="split, init and order (default: %(default)s)"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="use only the first N training rows of the split (default: all)",
    )
    parser.add_argument(
        "--precision",
        default=DEFAULTS.precision,
        choices=("auto", "bf16", "fp32"),
        help="our side's precision; the Trainer side is always fp32 (default: %(default)s, "
        "which is fp32 on a CPU without bf16 units)",
    )
    parser.add_argument(
        "--sides", default=",".join(SIDES), help=f"comma-separated subset of {','.join(ALL_SIDES)}"
    )
    parser.add_argument(
        "--adapter-learning-rate",
        type=float,
        default=1e-3,
        help="peak LR of the lora and adalora sides (adapters want a higher rate; default: %(default)s)",
    )
    parser.add_argument(
        "--adversarial-epsilon",
        type=float,
        default=DEFAULTS.adversarial_epsilon,
        help="fgm and pgd sides: L2 size of each text's perturbation (default: %(default)s)",
    )
    parser.add_argument(
        "--few-shot", type=int, default=16, help="setfit side: training rows per class (default: %(default)s)"
    )
    parser.add_argument(
        "--typo-rate", type=float, default=0.1, help="share of words given a typo (default: %(default)s)"
    )
    parser.add_argument(
        "--save-model",
        type=Path,
        default=None,
        help="keep our side's trained model folder here (usable by bench/inference.py)",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="results folder (default: bench/results)"
    )
    parser.add_argument("--name", default=NAME, help="results file stem (default: %(default)s)")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=sys.stderr.isatty(),
        help="progress bars on stderr (default: when stderr is a terminal)",
    )
    parser.add_argument("--side", choices=ALL_SIDES, help=argparse.SUPPRESS)  # internal: run one side
    parser.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)  # internal: where that side reports
    args = parser.parse_args(argv)
    if args.side is not None and args.json_out is None:
        parser.error("--side needs --json-out")
    if args.limit is not None and args.limit < 2:
        parser.error("--limit must be at least 2")
    unknown = set(args.sides.split(",")) - set(ALL_SIDES)
    if unknown:
        parser.error(f"--sides: unknown {sorted(unknown)}; expected a subset of {','.join(ALL_SIDES)}")
    return args


# ---------------------------------------------------------------------------------------------- one side


def split_for(args: argparse.Namespace) -> tuple[LabelledTexts, LabelledTexts]:
    """The training rows (limited) and the validation rows, identical for both sides."""
    _, train, validation = load_split(resolve_data(args.data), args.seed)
    return limit_rows(train, args.limit), validation


def _time_loop_overheads() -> dict[str, float]:
    """Measure what our loop's own clock includes besides training: in-loop evaluation and checkpoint saving.

    `LoopResult.train_seconds` spans the whole loop, evaluations and checkpoints included, while the Trainer
    side evaluates nothing while training; wrapping the two calls lets us subtract them.
    """
    spent = {"evaluate": 0.0, "checkpoint": 0.0}

    def timed(key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - started

        return wrapper

    loop_module._evaluate = timed("evaluate", loop_module._evaluate)
    loop_module.save_checkpoint = timed("checkpoint", loop_module.save_checkpoint)  # type: ignore[attr-defined]
    return spent


def _side_config(args: argparse.Namespace, side: str) -> TrainConfig:
    config = TrainConfig(
        base_model=args.base_model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay,
        max_length=args.max_length,
        seed=args.seed,
        precision=args.precision,
        validation_fraction=VALIDATION_FRACTION,
    )
    changes = dict(METHODS.get(side, {}))
    if "adapter" in changes:
        changes["learning_rate"] = args.adapter_learning_rate
    if "adversarial" in changes:
        changes["adversarial_epsilon"] = args.adversarial_epsilon
    return config.replace(**changes)


def _folder_mib(folder: Path) -> float:
    """Size of a saved model folder without its training records (metrics, plots)."""
    files = (p for p in folder.rglob("*") if p.is_file() and "training" not in p.relative_to(folder).parts)
    return sum(p.stat().st_size for p in files) / 2**20


def _robustness(folder: Path, validation: LabelledTexts, rate: float, seed: int) -> dict[str, Any]:
    """Accuracy of the saved model on the validation texts, clean and with typos."""
    classifier = Classifier.load(folder, max_length=DEFAULTS.max_length)
    noisy = [add_typos(text, rate, seed) for text in validation.texts]
    clean = [p.label for p in classifier.predict(validation.texts)]
    typos = [p.label for p in classifier.predict(noisy)]
    truth = validation.labels
    return {
        "typo_rate": rate,
        "clean_accuracy": float(np.mean([a == b for a, b in zip(clean, truth, strict=True)])),
        "typo_accuracy": float(np.mean([a == b for a, b in zip(typos, truth, strict=True)])),
    }


def run_ours(args: argparse.Namespace, side: str = "ours") -> dict[str, Any]:
    train, validation = split_for(args)
    config = _side_config(args, side)
    if config.task == "setfit":
        train, _ = sample_per_class(train, args.few_shot, args.seed)
    spent = _time_loop_overheads()
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp:
        output = args.save_model if args.save_model is not None else Path(tmp) / "model"
        trainer = train_few_shot if config.task == "setfit" else train_classifier
        result = trainer(train, config, output, validation=validation, progress=args.progress)
        history = read_metrics(output / "training" / "metrics.jsonl")
        size_mib = _folder_mib(output)
        robustness = _robustness(output, validation, args.typo_rate, args.seed)
    loop = result.loop
    samples = loop.samples_per_second * loop.train_seconds
    overhead = spent["evaluate"] + spent["checkpoint"]
    train_seconds = max(loop.train_seconds - overhead, 1e-9)
    evals = [r for r in history if "val_accuracy" in r]
    last = evals[-1] if evals else {}
    figures = result.metadata["validation_metrics"]
    training = result.metadata["training"]
    return {
        "train_rows": len(train),
        "validation_rows": len(validation),
        "precision": "bf16 autocast" if training["bf16"] else "fp32",
        "device": training["device"],
        "train_samples": round(samples),
        "train_seconds": train_seconds,
        "train_samples_per_second": samples / train_seconds,
        "loop_seconds": loop.train_seconds,
        "loop_samples_per_second": loop.samples_per_second,
        "evaluation_seconds_in_loop": spent["evaluate"],
        "checkpoint_seconds_in_loop": spent["checkpoint"],
        "evaluations": len(evals),
        "steps": loop.steps,
        "best_step": loop.best_step,
        "stopped_early": loop.stopped_early,
        "validation": {"accuracy": figures["accuracy"], "macro_f1": figures["macro_f1"], "n": figures["n"]},
        "validation_last_step": {
            "accuracy": last.get("val_accuracy"),
            "macro_f1": last.get("val_macro_f1"),
            "step": last.get("step"),
        },
        "trainable_parameters": training.get("trainable_parameters"),
        "total_parameters": training.get("total_parameters"),
        "model_folder_mib": size_mib,
        "robustness": robustness,
        "saved_model": str(args.save_model) if args.save_model is not None else None,
        "config": config.to_dict(),
    }


def _rows(
    tokenizer: Any, data: LabelledTexts, index: dict[str, int], max_length: int
) -> list[dict[str, Any]]:
    encoded = tokenizer(data.texts, truncation=True, max_length=max_length)
    keys = list(encoded.keys())
    return [
        {**{k: encoded[k][i] for k in keys}, "labels": index[label]} for i, label in enumerate(data.labels)
    ]


def warmup_argument(ratio: float) -> dict[str, Any]:
    """transformers 5 takes the ratio as a float `warmup_steps` (no `warmup_ratio`); 4.x the reverse."""
    if int(transformers.__version__.split(".")[0]) >= 5:
        return {"warmup_steps": ratio}
    return {"warmup_ratio": ratio}


def precision_name(dtype: torch.dtype) -> str:
    return "fp32" if dtype == torch.float32 else str(dtype).removeprefix("torch.")


def run_trainer(args: argparse.Namespace) -> dict[str, Any]:
    train, validation = split_for(args)
    labels = sorted(set(train.labels))
    index = {label: i for i, label in enumerate(labels)}
    folder = resolve_model(args.base_model)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    train_rows = _rows(tokenizer, train, index, args.max_length)
    val_rows = _rows(tokenizer, validation, index, args.max_length)
    set_seed(args.seed)  # the head's initialisation, as in the transformers examples
    model = AutoModelForSequenceClassification.from_pretrained(
        str(folder),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=index,
        use_safetensors=True,
    )
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        training_args = TrainingArguments(
            output_dir=tmp,
            num_train_epochs=args.epochs,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=EVAL_BATCH_SIZE,
            learning_rate=args.learning_rate,
            **warmup_argument(args.warmup_ratio),
            weight_decay=args.weight_decay,
            eval_strategy="no",
            save_strategy="no",
            report_to=[],
            use_cpu=not cuda,
            seed=args.seed,
            disable_tqdm=not args.progress,
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=train_rows,  # a list of dicts is a map-style dataset
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
        )
        output = trainer.train()
        arguments: dict[str, Any] = training_args.to_dict()  # type: ignore[no-untyped-call]
        predicted = trainer.predict(val_rows)  # type: ignore[arg-type]
    logits = predicted.predictions[0] if isinstance(predicted.predictions, tuple) else predicted.predictions
    report = classification_report(
        validation.labels, [labels[i] for i in np.asarray(logits).argmax(axis=1)], labels
    )
    metrics = output.metrics
    return {
        "train_rows": len(train),
        "validation_rows": len(validation),
        "precision": precision_name(next(model.parameters()).dtype),
        "device": str(training_args.device),
        "train_samples": round(metrics["train_samples_per_second"] * metrics["train_runtime"]),
        "train_seconds": metrics["train_runtime"],
        "train_samples_per_second": metrics["train_samples_per_second"],
        "steps": output.global_step,
        "validation": {"accuracy": report.accuracy, "macro_f1": report.macro_f1, "n": report.n},
        "training_arguments": {k: v for k, v in arguments.items() if k in RECORDED_ARGUMENTS},
        "max_length": args.max_length,
    }


def run_side(args: argparse.Namespace) -> int:
    """Child process: run one side, then write its figures (with this process's peak RSS) to --json-out."""
    quiet_transformers()
    started = time.perf_counter()
    record = run_trainer(args) if args.side == "trainer" else run_ours(args, args.side)
    record["side_seconds"] = time.perf_counter() - started
    record["peak_rss_mib"] = peak_rss_mib()
    if torch.cuda.is_available():
        record["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    args.json_out.write_text(json.dumps(record, default=str), encoding="utf-8")
    return 0


# ------------------------------------------------------------------------------------------- orchestration


def spawn(side: str, argv: list[str]) -> dict[str, Any]:
    """Run one side in a fresh interpreter (same arguments) and read back its record.

    Its wall time includes interpreter start-up, model load, training, evaluation and (ours) saving the model.
    """
    with tempfile.TemporaryDirectory(prefix="bench-side-") as tmp:
        report = Path(tmp) / f"{side}.json"
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            *argv,
            "--side",
            side,
            "--json-out",
            str(report),
        ]
        print(f"--- {side}: running in a subprocess", flush=True)
        started = time.perf_counter()
        code = subprocess.run(command, check=False).returncode
        wall = time.perf_counter() - started
        if code != 0 or not report.is_file():
            raise SystemExit(f"{NAME}: side {side!r} failed (exit code {code})")
        record: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    record["wall_seconds"] = wall
    return record


def compare(sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "ours" in sides:
        ours = sides["ours"]
        out["methods_vs_ours"] = {
            name: {
                "accuracy_diff": s["validation"]["accuracy"] - ours["validation"]["accuracy"],
                "typo_accuracy_diff": s["robustness"]["typo_accuracy"] - ours["robustness"]["typo_accuracy"],
                "speed_ratio": s["train_samples_per_second"] / ours["train_samples_per_second"],
            }
            for name, s in sides.items()
            if name in METHODS
        }
    if not all(s in sides for s in SIDES):
        return out
    ours, base = sides["ours"], sides["trainer"]
    last = ours["validation_last_step"]["accuracy"]
    return out | {
        "speed_ratio_ours_over_trainer": ours["train_samples_per_second"] / base["train_samples_per_second"],
        "accuracy_diff_ours_minus_trainer": ours["validation"]["accuracy"] - base["validation"]["accuracy"],
        "macro_f1_diff_ours_minus_trainer": ours["validation"]["macro_f1"] - base["validation"]["macro_f1"],
        "accuracy_diff_last_step_ours_minus_trainer": None
        if last is None
        else last - base["validation"]["accuracy"],
    }


def render(payload: dict[str, Any]) -> tuple[list[str], list[list[str]], list[list[str]], str]:
    """Rows for the console and the Markdown file."""
    headers = [
        "side",
        "precision",
        "train rows",
        "train samples/s",
        "train s",
        "wall s",
        "val accuracy",
        "val macro-F1",
        "accuracy with typos",
        "trainable params",
        "folder MiB",
        "peak RSS MiB",
    ]
    rows = [
        [
            name,
            s["precision"],
            fmt(s["train_rows"], 0),
            fmt(s["train_samples_per_second"]),
            fmt(s["train_seconds"]),
            fmt(s["wall_seconds"]),
            fmt(s["validation"]["accuracy"], 4),
            fmt(s["validation"]["macro_f1"], 4),
            fmt(s["robustness"]["typo_accuracy"], 4) if "robustness" in s else "-",
            fmt(s["trainable_parameters"], 0) if s.get("trainable_parameters") else "-",
            fmt(s["model_folder_mib"], 1) if "model_folder_mib" in s else "-",
            fmt(s["peak_rss_mib"], 0),
        ]
        for name, s in payload["sides"].items()
    ]
    c = payload["comparison"]
    summary: list[list[str]] = []
    if "speed_ratio_ours_over_trainer" in c:
        last = c["accuracy_diff_last_step_ours_minus_trainer"]
        summary = [
            ["speed ratio ours/trainer (train samples/s)", f"{c['speed_ratio_ours_over_trainer']:.2f}x"],
            ["accuracy ours - trainer", f"{100 * c['accuracy_diff_ours_minus_trainer']:+.2f} pp"],
            ["macro-F1 ours - trainer", f"{100 * c['macro_f1_diff_ours_minus_trainer']:+.2f} pp"],
            ["accuracy ours (last-step weights) - trainer", "-" if last is None else f"{100 * last:+.2f} pp"],
        ]
    for name, d in c.get("methods_vs_ours", {}).items():
        summary += [
            [f"accuracy {name} - ours", f"{100 * d['accuracy_diff']:+.2f} pp"],
            [f"accuracy with typos {name} - ours", f"{100 * d['typo_accuracy_diff']:+.2f} pp"],
            [f"speed ratio {name}/ours (train samples/s)", f"{d['speed_ratio']:.2f}x"],
        ]
    s = payload["settings"]
    settings = (
        f"{s['base_model']}, {s['train_rows']} training rows, {s['validation_rows']} validation rows "
        f"(seed {s['seed']}), {s['epochs']} epochs, batch {s['batch_size']}, lr {s['learning_rate']}, "
        f"warmup {s['warmup_ratio']}, weight decay {s['weight_decay']}, max length {s['max_length']}"
    )
    return headers, rows, summary, settings


def markdown(payload: dict[str, Any]) -> str:
    headers, rows, summary, settings = render(payload)
    parts = [markdown_header("Fine-tuning: our trainer vs transformers.Trainer", payload, settings)]
    parts.append(markdown_table(headers, rows))
    if summary:
        parts += ["\n", markdown_table(["comparison", "value"], summary)]
    parts.append(
        "\ntrain samples/s: rows processed per second of training-loop time, without model load and "
        "evaluation (Trainer: `train_samples_per_second`; ours: the loop's rows over its time minus in-loop "
        "evaluation and checkpointing). wall s: the whole subprocess. Our validation figures are those of "
        "the best evaluated weights, chosen on this same validation split; the last-step row compares the "
        "final weights, as the Trainer side does. accuracy with typos: the saved model on the validation "
        f"texts with a character edit in {100 * payload['settings'].get('typo_rate', 0.1):g}% of the words "
        "(`textcore.noise.add_typos`). folder MiB: the saved model folder without its training records "
        "(an adapter side saves only the adapter and the head).\n"
    )
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.side is not None:
        return run_side(args)
    data = resolve_data(args.data)
    if not data_or_skip(data, NAME):
        return 0
    warn_if_busy()
    machine = machine_info()
    train, validation = split_for(args)
    forwarded = sys.argv[1:] if argv is None else argv
    sides = {side: spawn(side, forwarded) for side in ALL_SIDES if side in args.sides.split(",")}
    payload: dict[str, Any] = {
        "benchmark": NAME,
        "created_at": utc_now(),
        "command": command_line(),
        "machine": machine,
        "settings": {
            "data": str(data),
            "data_sha256": file_sha256(data),
            "base_model": args.base_model,
            "base_model_folder": str(resolve_model(args.base_model)),
            "seed": args.seed,
            "limit": args.limit,
            "train_rows": len(train),
            "validation_rows": len(validation),
            "validation_fraction": VALIDATION_FRACTION,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "warmup_ratio": args.warmup_ratio,
            "weight_decay": args.weight_decay,
            "max_length": args.max_length,
            "adapter_learning_rate": args.adapter_learning_rate,
            "adversarial_epsilon": args.adversarial_epsilon,
            "few_shot_per_class": args.few_shot,
            "typo_rate": args.typo_rate,
            "our_precision": args.precision,
            "our_bf16": use_bf16(args.precision, resolve_device("auto")),
        },
        "sides": sides,
    }
    payload["comparison"] = compare(sides)
    headers, rows, summary, settings = render(payload)
    print_table(f"Fine-tuning: {settings}", headers, rows)
    if summary:
        print_table("Comparison", ["", "value"], summary)
    json_path, md_path = write_results(args.name, payload, markdown(payload), args.out)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
