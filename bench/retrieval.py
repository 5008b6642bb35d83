"""Retrieval benchmark: dense, keyword, hybrid and re-ranked search over the bank FAQs, one run.

The knowledge base indexes each distinct FAQ answer WITHOUT its question (`index_questions=False`), so a
question must be matched to its answer text. The distinct questions are split, seeded, into 80% train and
20% held out. Then:

1. Untrained modes (base MiniLM, BM25, their RRF fusion): recall@1, recall@5, MRR@10 on every question and
   on the held-out questions.
2. A cross-encoder re-ranker (MiniLM + one-logit head) is trained on the train questions only: each with its
   answer and `--per-query` hard negatives mined by the base encoder from all answers
   (`customer_service.reranking.train_reranker_from_faqs`); then mode "rerank" (hybrid top `--candidates`
   re-scored, the order fusing hybrid's and the re-ranker's rankings) and "rerank-only" (ordered by the
   re-ranker alone) on the held-out questions.
3. Unless `--no-retriever`: the retriever's encoder is fine-tuned contrastively on the train questions (with
   one mined hard negative each), the answers are embedded again, and dense/hybrid/rerank are measured on the
   held-out questions with it.

With `--index-questions` each answer is indexed after its question, as the app indexes FAQs (the re-ranker
reads the answer alone either way, as it was trained: `customer_service.retrieval.reranker_passage`). A
held-out question then appears word for word among the indexed texts, so those figures are an upper bound
for the first stage: they show how each mode copes with the app's passage format, not how it generalises
to new wordings. The default (answers alone) is the project's reference figure.

A question counts as answered when any of the answers stored for that question text comes back (a few
questions appear with two answers). Figures on held-out questions are the fair ones for trained models.

    python bench/retrieval.py                    # full run (about 10-15 minutes on 2 cores)
    python bench/retrieval.py --quick --out /tmp/bench-smoke
    python bench/retrieval.py --lead             # which passage leads an answer (no training, 1-2 minutes)

Results: bench/results/retrieval.json and bench/results/retrieval.md.

`--lead` trains nothing: it measures which of the bot's passages should lead an answer without a re-ranker.
The bot reads the hybrid top `--lead-k` (its `sources_per_answer`, default 3), judges each by the cosine
similarity of query and passage, and cites the first. Rules, each scored by recall@1 of the passage it puts
first, on every question and on the held-out ones: "as retrieved" (RRF order), "fused" (RRF order, the
first passage below `min_similarity` giving way to one that reaches it: `customer_service.policy.
relevant_first` without a margin, the bot's rule until it took its `clarify_margin`), "most relevant" (the
highest cosine among the k) and "fused unless +m" (`relevant_first` with margin m: the most relevant
passage leads when its cosine exceeds the first's by more than m; the bot's rule with m = 0.08). "won" and
"lost" count the questions a rule leads rightly where "fused" does not, and the reverse; "any of k" is the
ceiling. Results: bench/results/retrieval-lead.{json,md} (retrieval-lead-questions.{json,md} with
`--index-questions`).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub/transformers are imported
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]  # `common`

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from common import (  # noqa: E402
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

from customer_service.database import Database  # noqa: E402
from customer_service.knowledge import FaqIn, KnowledgeBase  # noqa: E402
from customer_service.policy import relevant_first  # noqa: E402
from customer_service.reranking import train_reranker_from_faqs, train_retriever_from_faqs  # noqa: E402
from customer_service.retrieval import Retriever  # noqa: E402
from customer_service.retrieval_eval import METRICS, evaluate_retrieval, read_faqs  # noqa: E402
from customer_service.settings import PolicySettings  # noqa: E402
from textcore import Encoder, Reranker, TrainConfig  # noqa: E402

NAME = "retrieval"
DEFAULT_DATA = REPO_ROOT / "../shared/data/bank_faqs/faqs.csv"
UNTRAINED = ("dense", "keyword", "hybrid")
QUICK_FAQS = 80  # --quick: this many FAQs, 1 hard negative each, pairs of at most 96 tokens
HEADERS = ["retriever", "mode", "questions", "n", *METRICS, "ms/query"]
LEAD_HEADERS = ["lead rule", "questions", "n", "recall@1 of the lead", "won", "lost"]
FUSED = "fused"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="FAQ CSV (question, answer, category)"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="results folder (default: bench/results)"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--holdout", type=float, default=0.2, help="fraction of questions held out")
    parser.add_argument("--epochs", type=int, default=2, help="re-ranker epochs (default: %(default)s)")
    parser.add_argument("--retriever-epochs", type=int, default=1)
    parser.add_argument("--retriever-batch-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=192, help="re-ranker pair length in tokens")
    parser.add_argument("--per-query", type=int, default=3, help="hard negatives per training question")
    parser.add_argument("--candidates", type=int, default=20, help="hybrid passages the re-ranker reads")
    parser.add_argument("--no-retriever", action="store_true", help="skip the retriever fine-tune")
    parser.add_argument(
        "--index-questions",
        action="store_true",
        help="index each answer after its question, as the app does (held-out questions are then indexed)",
    )
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_FAQS} FAQs, 1 short epoch")
    parser.add_argument(
        "--lead",
        action="store_true",
        help="only compare rules for the passage that leads an answer (hybrid, cosine; nothing trained)",
    )
    parser.add_argument("--lead-k", type=int, default=3, help="passages the bot reads (default: %(default)s)")
    parser.add_argument(
        "--lead-margins",
        type=lambda text: [float(m) for m in text.split(",")],
        default=[0.02, 0.05, 0.08, 0.12],
        help="margins m of the rule 'fused unless +m' (comma-separated; default 0.02,0.05,0.08,0.12)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.retriever_epochs, args.max_length, args.per_query = 1, 1, 96, 1
        args.candidates, args.retriever_batch_size = 10, 16
    return args


def load(args: argparse.Namespace) -> tuple[list[FaqIn], dict[str, str], list[str]]:
    """The FAQs, their answers as passages (answer text -> passage id), and the held-out question texts."""
    faqs = read_faqs(args.data)
    if args.quick:
        order = np.random.default_rng(args.seed).permutation(len(faqs))[:QUICK_FAQS]
        faqs = [faqs[i] for i in sorted(order.tolist())]
    passages: dict[str, str] = {}
    for faq in faqs:
        passages.setdefault(faq.answer, faq.id)  # one passage per distinct answer
    questions = sorted({f.question for f in faqs})
    order = np.random.default_rng(args.seed).permutation(len(questions))
    held_out = sorted(questions[i] for i in order[: round(len(questions) * args.holdout)])
    return faqs, passages, held_out


def relevant(faqs: list[FaqIn], passages: dict[str, str]) -> dict[str, set[str]]:
    """Question text -> ids of the passages holding any of its answers."""
    found: dict[str, set[str]] = defaultdict(set)
    for faq in faqs:
        found[faq.question].add(passages[faq.answer])
    return found


def measure(
    retriever: Retriever,
    questions: list[str],
    gold: dict[str, set[str]],
    modes: tuple[str, ...],
    label: str,
    split: str,
    shown: str | None = None,
) -> list[dict[str, Any]]:
    """Figures per mode; `shown` names the row instead (e.g. "rerank-only" for an unfused re-ranker)."""
    rows = []
    for mode in modes:
        start = time.perf_counter()
        figures = evaluate_retrieval(retriever, questions, [gold[q] for q in questions], [mode])[mode]
        elapsed = time.perf_counter() - start
        rows.append(
            {
                "retriever": label,
                "mode": shown or mode,
                "questions": split,
                "n": len(questions),
                **figures,
                "ms_per_query": 1000 * elapsed / len(questions),
            }
        )
        print(
            f"  {label:>10} {shown or mode:>11} {split:>8}: "
            + ", ".join(f"{m} {figures[m]:.3f}" for m in METRICS)
        )
    return rows


def lead_rules(relevance: list[float], threshold: float, margins: list[float]) -> dict[str, int]:
    """Rule name -> the index of the passage it leads with (relevance: cosine, in fused order)."""
    best = max(range(len(relevance)), key=lambda i: relevance[i])  # the first of equals
    rules = {"as retrieved": 0, FUSED: relevant_first(relevance, threshold)[0], "most relevant": best}
    for m in margins:
        rules[f"fused unless +{m:g}"] = relevant_first(relevance, threshold, m)[0]
    return rules


def measure_lead(
    retriever: Retriever,
    questions: list[str],
    gold: dict[str, set[str]],
    split: str,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """recall@1 of the passage each rule puts first among the hybrid top `--lead-k`, and the leads it
    changes from the bot's rule: right where that was wrong (won) and wrong where that was right (lost)."""
    threshold = PolicySettings().min_similarity
    hits: dict[str, int] = defaultdict(int)
    won: dict[str, int] = defaultdict(int)
    lost: dict[str, int] = defaultdict(int)
    for question in questions:
        passages = retriever.search(question, args.lead_k, "hybrid")
        relevance = retriever.similarities(question, [p.id for p in passages])
        right = [p.id in gold[question] for p in passages]
        rules = lead_rules(relevance, threshold, args.lead_margins)
        now = right[rules[FUSED]]
        for name, lead in rules.items():
            hits[name] += right[lead]
            won[name] += right[lead] and not now
            lost[name] += now and not right[lead]
        hits[f"any of {args.lead_k}"] += any(right)
    rows = [
        {"rule": name, "questions": split, "n": len(questions), "recall@1": count / len(questions),
         "won": won.get(name), "lost": lost.get(name)}
        for name, count in hits.items()
    ]  # fmt: skip
    for r in rows:
        print(
            f"  {r['rule']:>24} {split:>8}: recall@1 {r['recall@1']:.3f} (won {r['won']}, lost {r['lost']})"
        )
    return rows


def run_lead(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    faqs, passages, held_out = load(args)
    gold = relevant(faqs, passages)
    everyone = sorted(gold)
    kb, index_seconds = open_kb(
        work / "base", Encoder.from_pretrained("minilm"), passages, faqs, args.index_questions
    )
    retriever = Retriever(kb)
    rows = measure_lead(retriever, everyone, gold, "all", args)
    rows += measure_lead(retriever, held_out, gold, "held-out", args)
    data = {"faqs": len(faqs), "passages": len(passages), "questions": len(everyone)}
    return {"rows": rows, "index_seconds": round(index_seconds, 1), "data": data}


def lead_table(payload: dict[str, Any]) -> list[list[str]]:
    def count(value: int | None) -> str:
        return "-" if value is None else str(value)

    return [
        [r["rule"], r["questions"], str(r["n"]), fmt(r["recall@1"], 3), count(r["won"]), count(r["lost"])]
        for r in payload["rows"]
    ]


def lead_markdown(payload: dict[str, Any]) -> str:
    s, d = payload["settings"], payload["data"]
    where = "after their questions" if s.get("index_questions") else "without their questions"
    settings = (
        f"{d['faqs']} FAQs ({d['passages']} distinct answers indexed {where}), {d['questions']} questions; "
        f"the hybrid top {s['lead_k']} judged by cosine similarity, base MiniLM, no re-ranker"
        + (" (QUICK smoke run: not representative)" if s["quick"] else "")
    )
    title = "Which passage leads an answer (bank FAQs)"
    return markdown_header(title, payload, settings) + markdown_table(LEAD_HEADERS, lead_table(payload))


def open_kb(
    folder: Path,
    encoder: Encoder,
    passages: dict[str, str],
    faqs: list[FaqIn],
    index_questions: bool = False,
) -> tuple[KnowledgeBase, float]:
    db = Database(f"sqlite:///{folder / 'kb.db'}")
    db.migrate()
    first = {f.id: f for f in faqs}
    start = time.perf_counter()
    kb = KnowledgeBase.open(db, encoder, folder / "index", index_questions=index_questions)
    kb.upsert_faqs([first[i] for i in passages.values()])
    return kb, time.perf_counter() - start


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    faqs, passages, held_out = load(args)
    gold = relevant(faqs, passages)
    everyone = sorted(gold)
    train_faqs = [f for f in faqs if f.question not in set(held_out)]
    print(
        f"{len(faqs)} FAQs, {len(passages)} distinct answers, {len(everyone)} questions "
        f"({len(held_out)} held out)"
    )
    base = Encoder.from_pretrained("minilm")
    kb, index_seconds = open_kb(work / "base", base, passages, faqs, args.index_questions)
    rows = measure(Retriever(kb), everyone, gold, UNTRAINED, "base", "all")
    rows += measure(Retriever(kb), held_out, gold, UNTRAINED, "base", "held-out")

    config = TrainConfig(
        task="cross-encoder",
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
    )
    start = time.perf_counter()
    trained = train_reranker_from_faqs(
        train_faqs,
        work / "reranker",
        config,
        encoder=base,
        corpus=list(passages),
        per_query=args.per_query,
        candidates=args.candidates,
    )
    reranker_seconds = time.perf_counter() - start
    reranker = Reranker.load(work / "reranker", max_length=config.max_length)
    rows += measure(
        Retriever(kb, reranker, candidates=args.candidates), held_out, gold, ("rerank",), "base", "held-out"
    )
    alone = Retriever(kb, reranker, candidates=args.candidates, fuse_rerank=False)
    rows += measure(alone, held_out, gold, ("rerank",), "base", "held-out", shown="rerank-only")
    training: dict[str, Any] = {
        "reranker": {
            "config": config.to_dict(),
            "seconds": round(reranker_seconds, 1),
            "validation_metrics": trained.metrics,
            "data": trained.metadata.get("data"),
        },
    }
    if not args.no_retriever:
        rows += tuned_retriever(
            args, work, train_faqs, passages, faqs, held_out, gold, base, reranker, training
        )
    return {
        "rows": rows,
        "training": training,
        "index_seconds": round(index_seconds, 1),
        "data": {
            "file": str(args.data),
            "faqs": len(faqs),
            "passages": len(passages),
            "questions": len(everyone),
            "held_out_questions": len(held_out),
            "train_faqs": len(train_faqs),
        },
    }


def tuned_retriever(
    args: argparse.Namespace,
    work: Path,
    train_faqs: list[FaqIn],
    passages: dict[str, str],
    faqs: list[FaqIn],
    held_out: list[str],
    gold: dict[str, set[str]],
    base: Encoder,
    reranker: Reranker,
    training: dict[str, Any],
) -> list[dict[str, Any]]:
    config = TrainConfig(
        task="embedding",
        epochs=args.retriever_epochs,
        batch_size=args.retriever_batch_size,
        max_length=128,
        seed=args.seed,
    )
    start = time.perf_counter()
    trained = train_retriever_from_faqs(
        train_faqs, work / "retriever", config, encoder=base, corpus=list(passages)
    )
    training["retriever"] = {
        "config": config.to_dict(),
        "seconds": round(time.perf_counter() - start, 1),
        "validation_metrics": trained.metrics,
    }
    kb, _ = open_kb(
        work / "tuned", Encoder.from_pretrained(work / "retriever"), passages, faqs, args.index_questions
    )
    retriever = Retriever(kb, reranker, candidates=args.candidates)
    rows = measure(retriever, held_out, gold, ("dense", "hybrid", "rerank"), "fine-tuned", "held-out")
    alone = Retriever(kb, reranker, candidates=args.candidates, fuse_rerank=False)
    return rows + measure(alone, held_out, gold, ("rerank",), "fine-tuned", "held-out", shown="rerank-only")


def table(payload: dict[str, Any]) -> list[list[str]]:
    return [
        [
            r["retriever"],
            r["mode"],
            r["questions"],
            str(r["n"]),
            *(fmt(r[m], 3) for m in METRICS),
            fmt(r["ms_per_query"], 1),
        ]
        for r in payload["rows"]
    ]


def markdown(payload: dict[str, Any]) -> str:
    s, d = payload["settings"], payload["data"]
    settings = (
        f"{d['faqs']} FAQs ({d['passages']} distinct answers indexed "
        + (
            "after their questions, held-out ones included"
            if s.get("index_questions")
            else "without their questions"
        )
        + "), "
        f"{d['questions']} questions of which {d['held_out_questions']} held out (seed {s['seed']}); "
        f"re-ranker: {s['epochs']} epoch(s), max length {s['max_length']}, {s['per_query']} hard negatives "
        f"per question, re-scoring the hybrid top {s['candidates']}"
        + ("" if s["no_retriever"] else f"; retriever fine-tuned {s['retriever_epochs']} epoch(s)")
        + (" (QUICK smoke run: not representative)" if s["quick"] else "")
    )
    parts = [
        markdown_header("Retrieval on the bank FAQs", payload, settings),
        markdown_table(HEADERS, table(payload)),
    ]
    t = payload["training"]
    reranker = t["reranker"]
    parts.append(
        f"\nRe-ranker training: {reranker['seconds']} s; validation {reranker['validation_metrics']}.\n"
    )
    if "retriever" in t:
        parts.append(
            f"Retriever fine-tune: {t['retriever']['seconds']} s; validation "
            f"{t['retriever']['validation_metrics']}.\n"
        )
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.data = args.data.expanduser().resolve()
    if not args.data.is_file():
        print(
            f"{NAME}: skipped: no FAQ file at {args.data} (pass --data FILE); the data is never copied here"
        )
        return 0
    quiet_transformers()
    warn_if_busy()
    payload: dict[str, Any] = {
        "command": command_line(),
        "created_at": utc_now(),
        "machine": machine_info(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as work:
        payload.update((run_lead if args.lead else run)(args, Path(work)))
    payload["wall_seconds"] = round(time.perf_counter() - start, 1)
    if args.lead:
        print_table("Which passage leads an answer", LEAD_HEADERS, lead_table(payload))
        name = f"{NAME}-lead" + ("-questions" if args.index_questions else "")
        json_path, md_path = write_results(name, payload, lead_markdown(payload), args.out)
        print(f"wrote {json_path} and {md_path} ({payload['wall_seconds']} s)")
        return 0
    print_table("Retrieval on the bank FAQs", HEADERS, table(payload))
    json_path, md_path = write_results(NAME, payload, markdown(payload), args.out)
    print(f"wrote {json_path} and {md_path} ({payload['wall_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
