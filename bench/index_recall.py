"""Recall and latency of `textcore.VectorIndex`'s HNSW graph on real embeddings, against exact search.

Real texts (every text of BANKING77 train, CLINC150 train + val, the bank FAQs' questions and answers,
Twitter financial news, Financial PhraseBank and the Amazon Scientific items; about 48,000 after dropping
repeats) are embedded with the project's encoder (`--model`, default `minilm`, at the precision the services
use: `auto`). Real embeddings cluster by topic, which makes a graph search harder than on the random unit
vectors of `index_updates.py`. A seeded sample of `--queries` texts is held out as queries; the rest go into
the index. The embeddings are cached in `--cache-dir` (a `.npy` keyed by the model, the precision and the
texts), so only the first run embeds.

In one run, the same vectors go into one `VectorIndex` per configuration, built as the services build theirs
(`VectorIndex(dim, ...)`, `add`, then the first search builds the faiss structure):

- `exact`: `approximate_threshold` at the number of vectors (up to it the index is exact, `IndexFlatIP`);
- `hnsw ef=E`: the default threshold and `hnsw_m`, `ef_search=E` for each `--ef-search` value and the
  current default.

Per configuration: recall@1 and recall@10 against exact search (numpy inner products), the median
single-query latency (`search`, every query once per round) and the median batch latency (`search_batch` of
all queries, once per round) over `--rounds` rounds that take the configurations in turn, and the build
time (the first search). A hit counts when its score reaches the exact k-th best score (less 1e-5), so
texts with equal embeddings do not count as misses.

    python bench/index_recall.py                                    # about 48,000 texts, 1,000 queries
    python bench/index_recall.py --limit 21000 --queries 200 --rounds 1 --out /tmp/bench-smoke
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
import csv  # noqa: E402
import hashlib  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import torch  # noqa: E402
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
from rich.progress import Progress  # noqa: E402

from textcore import Encoder, SearchHit, VectorIndex, resolve_model  # noqa: E402

NAME = "index-recall"
DEFAULT_DATA_DIR_TEXT = "../shared/data"  # relative to the repository root
DEFAULT_CACHE_DIR = Path(tempfile.gettempdir()) / "textcore-bench-cache"
K = 10
TIE = 1e-5  # a hit scoring within this of the exact k-th best score counts (faiss and numpy sum differently)
EMBED_CHUNK = 2048  # texts per `Encoder.encode` call: progress between calls

# (source, file under the data folder, text columns): every non-empty cell of those columns is one text
SOURCES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("banking77", "banking77/train.csv", ("text",)),
    ("clinc150", "clinc150/train.csv", ("text",)),
    ("clinc150", "clinc150/val.csv", ("text",)),
    ("bank_faqs", "bank_faqs/faqs.csv", ("question", "answer")),
    ("twitter_financial_news", "twitter_financial_news/train.csv", ("text",)),
    ("financial_phrasebank", "financial_phrasebank/train.csv", ("sentence",)),
    ("amazon_scientific", "amazon_scientific/items.csv", ("text",)),
)
_INDEX_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(VectorIndex.__init__).parameters.items()
    if p.default is not inspect.Parameter.empty
}
DEFAULT_EF = int(_INDEX_DEFAULTS["ef_search"])
DEFAULT_THRESHOLD = int(_INDEX_DEFAULTS["approximate_threshold"])
DEFAULT_HNSW_M = int(_INDEX_DEFAULTS["hnsw_m"])


@dataclass(frozen=True, slots=True)
class Corpus:
    """Distinct texts (first occurrence kept; case and spacing ignored) and the source of each."""

    texts: list[str]
    sources: list[str]
    files: list[str]  # the files read, relative to the data folder


@dataclass(frozen=True, slots=True)
class Config:
    """One index to measure: its row name and its `VectorIndex` keyword arguments (those not left default)."""

    name: str
    ef_search: int | None  # None: exact
    kwargs: dict[str, int]


def read_corpus(data_dir: Path) -> tuple[Corpus, list[str]]:
    """Every text of the files in SOURCES that exist; also the files that were not found."""
    texts, sources, files, missing, seen = [], [], [], [], set()
    for source, relative, columns in SOURCES:
        path = data_dir / relative
        if not path.is_file():
            missing.append(relative)
            continue
        files.append(relative)
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                for column in columns:
                    text = " ".join((row.get(column) or "").split())
                    key = text.casefold()  # the encoder is uncased: these would embed identically
                    if text and key not in seen:
                        seen.add(key)
                        texts.append(text)
                        sources.append(source)
    return Corpus(texts, sources, files), missing


def cache_file(
    cache_dir: Path, model: str, folder: Path, bf16: bool, max_length: int, texts: list[str]
) -> Path:
    """Where the embeddings of `texts` by this model at this precision and length are cached."""
    key = hashlib.sha256(json.dumps([str(folder), bf16, max_length, texts]).encode()).hexdigest()[:16]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
    return cache_dir / f"{NAME}-{name}-{'bf16' if bf16 else 'fp32'}-{key}.npy"


def embed(corpus: Corpus, args: argparse.Namespace) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
    """(n, dim) float32 L2-normalised embeddings of every text, from the cache when it holds them.

    The cache file has a `.json` beside it with the time the embedding took when it was made.
    """
    quiet_transformers()
    if args.embed_threads is not None:
        torch.set_num_threads(args.embed_threads)
    encoder = Encoder.from_pretrained(args.model, precision=args.precision)
    folder = resolve_model(args.model)
    path = cache_file(
        args.cache_dir.expanduser(), args.model, folder, encoder.bf16, encoder.max_length, corpus.texts
    )
    info: dict[str, Any] = {
        "model_folder": str(folder),
        "bf16": encoder.bf16,
        "max_length": encoder.max_length,
        "device": str(encoder.device),
        "cache_file": str(path),
    }
    sidecar = path.with_suffix(".json")
    if path.is_file():
        vectors = np.load(path)
        made = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else None
        print(f"embeddings: {len(vectors):,} read from {path}")
        return vectors, info | {"cached": True, "when_embedded": made}
    start, parts = time.perf_counter(), []
    with Progress() as progress:
        task = progress.add_task(f"embedding {len(corpus.texts):,} texts", total=len(corpus.texts))
        for i in range(0, len(corpus.texts), EMBED_CHUNK):
            chunk = corpus.texts[i : i + EMBED_CHUNK]
            parts.append(encoder.encode(chunk))  # (chunk, dim) float32
            progress.advance(task, len(chunk))
    vectors = np.concatenate(parts).astype(np.float32)  # (n, dim) float32, L2-normalised
    embed_s = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        np.save(handle, vectors)
    Path(tmp).replace(path)
    made = {"embed_s": round(embed_s, 1), "texts_per_s": round(len(vectors) / embed_s, 1),
            "torch_threads": torch.get_num_threads(), "created_at": utc_now()}  # fmt: skip
    sidecar.write_text(json.dumps(made) + "\n", encoding="utf-8")
    print(f"embeddings: {len(vectors):,} in {embed_s:.0f} s, cached in {path}")
    return vectors, info | {"cached": False, "when_embedded": made}


def exact_top(
    queries: npt.NDArray[np.float32], vectors: npt.NDArray[np.float32], k: int
) -> npt.NDArray[np.float32]:
    """(n_queries, k) float32: each query's k best inner products over `vectors`, best first."""
    rows = []
    for i in range(0, len(queries), 256):
        scores = queries[i : i + 256] @ vectors.T  # (256, n) float32
        top = -np.partition(-scores, k - 1, axis=1)[:, :k]
        rows.append(-np.sort(-top, axis=1))
    return np.concatenate(rows)


def recall(
    hits: Sequence[Sequence[SearchHit]], truth: npt.NDArray[np.float32], k: int
) -> npt.NDArray[np.float64]:
    """(n_queries,) share of each query's first k hits that score at least the exact k-th best score."""
    found = [
        sum(h.score >= kth - TIE for h in row[:k]) for row, kth in zip(hits, truth[:, k - 1], strict=True)
    ]
    return np.array(found, dtype=np.float64) / k


def configs(n: int, ef_values: Sequence[int]) -> list[Config]:
    """Exact, then HNSW at each ef_search value and the default (the services' own: `VectorIndex(dim)`)."""
    rows = [Config("exact", None, {"approximate_threshold": n})]
    for ef in sorted({*ef_values, DEFAULT_EF}):
        name = f"hnsw ef={ef}" + (" (default)" if ef == DEFAULT_EF else "")
        rows.append(Config(name, ef, {} if ef == DEFAULT_EF else {"ef_search": ef}))
    return rows


def build(config: Config, ids: list[str], vectors: npt.NDArray[np.float32], probe: npt.NDArray[np.float32]
          ) -> tuple[VectorIndex, float]:  # fmt: skip
    """A filled index and the seconds its first search took (that search builds the faiss structure)."""
    index = VectorIndex(vectors.shape[1], **config.kwargs)
    index.add(ids, vectors)
    start = time.perf_counter()
    index.search(probe, K)
    return index, time.perf_counter() - start


Timings = dict[str, list[float]]  # index name -> milliseconds


def measure(
    indexes: dict[str, VectorIndex], queries: npt.NDArray[np.float32], args: argparse.Namespace
) -> tuple[Timings, Timings, dict[str, list[list[SearchHit]]]]:
    """Single-query ms (all rounds) and batch ms (one per round) per index, taken in turn; the batch hits."""
    single: Timings = {name: [] for name in indexes}
    batch: Timings = {name: [] for name in indexes}
    hits: dict[str, list[list[SearchHit]]] = {}
    names = list(indexes)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # a different one first each round
            index = indexes[name]
            for query in queries:
                start = time.perf_counter()
                index.search(query, K)
                single[name].append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            hits[name] = index.search_batch(queries, K)
            batch[name].append((time.perf_counter() - start) * 1000)
        print(f"round {r + 1}/{args.rounds} done")
    return single, batch, hits


def run(corpus: Corpus, vectors: npt.NDArray[np.float32], args: argparse.Namespace) -> dict[str, Any]:
    order = list(range(len(corpus.texts)))
    random.Random(args.seed).shuffle(order)
    query_rows = order[: args.queries]
    index_rows = order[args.queries :][: args.limit]
    ids = [f"t{i}" for i in index_rows]
    stored, queries = vectors[index_rows], vectors[query_rows]  # (n, dim), (q, dim) float32
    truth = exact_top(queries, stored, K)  # (q, K) float32
    indexes, build_s, kinds = {}, {}, {}
    for config in configs(len(ids), args.ef_search):
        indexes[config.name], build_s[config.name] = build(config, ids, stored, queries[0])
        kinds[config.name] = indexes[config.name].kind
        print(f"{config.name}: {kinds[config.name]}, built in {build_s[config.name]:.1f} s")
    single, batch, hits = measure(indexes, queries, args)
    exact_single, exact_batch = statistics.median(single["exact"]), statistics.median(batch["exact"])
    query_sources = np.array([corpus.sources[i] for i in query_rows])
    rows = []
    for config in configs(len(ids), args.ef_search):
        r1, r10 = recall(hits[config.name], truth, 1), recall(hits[config.name], truth, K)
        single_ms, batch_ms = statistics.median(single[config.name]), statistics.median(batch[config.name])
        rows.append({
            "config": config.name, "kind": kinds[config.name], "ef_search": config.ef_search,
            "recall_at_1": float(r1.mean()), "recall_at_10": float(r10.mean()),
            "queries_with_recall_at_10_below_0.8": int((r10 < 0.8).sum()),
            "single_median_ms": single_ms, "single_p95_ms": float(np.percentile(single[config.name], 95)),
            "single_vs_exact": exact_single / single_ms,
            "batch_median_ms": batch_ms, "batch_ms_per_query": batch_ms / len(queries),
            "batch_vs_exact": exact_batch / batch_ms, "build_s": build_s[config.name],
            "recall_at_10_by_source": {
                s: float(r10[query_sources == s].mean()) for s in sorted(set(query_sources.tolist()))
            },
            "batch_ms": batch[config.name],
        })  # fmt: skip
    return {
        "indexed": len(ids),
        "queries": len(query_rows),
        "query_sources": {s: int((query_sources == s).sum()) for s in sorted(set(query_sources.tolist()))},
        "faiss_threads": faiss.omp_get_max_threads(),
        "index_defaults": {
            "approximate_threshold": DEFAULT_THRESHOLD,
            "hnsw_m": DEFAULT_HNSW_M,
            "ef_search": DEFAULT_EF,
        },
        "rows": rows,
    }


HEADERS = ["index", "recall@1", "recall@10", "single ms", "vs exact", "batch ms/query", "vs exact", "build s"]


def table_rows(figures: dict[str, Any]) -> list[list[str]]:
    return [
        [r["config"], f"{r['recall_at_1']:.4f}", f"{r['recall_at_10']:.4f}", fmt(r["single_median_ms"], 3),
         f"{r['single_vs_exact']:.1f}x", fmt(r["batch_ms_per_query"], 3), f"{r['batch_vs_exact']:.1f}x",
         fmt(r["build_s"], 2)]
        for r in figures["rows"]
    ]  # fmt: skip


def source_rows(figures: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """recall@10 per query source (rows) and HNSW configuration (columns)."""
    graphs = [r for r in figures["rows"] if r["kind"] == "hnsw"]
    headers = ["query source", "queries", *(r["config"].removeprefix("hnsw ") for r in graphs)]
    rows = [
        [s, str(n), *(f"{r['recall_at_10_by_source'][s]:.4f}" for r in graphs)]
        for s, n in figures["query_sources"].items()
    ]
    return headers, rows


def markdown(payload: dict[str, Any], args: argparse.Namespace) -> str:
    figures, embedding = payload["figures"], payload["embedding"]
    settings = (
        f"{figures['indexed']:,} real texts in the index and {figures['queries']:,} held-out queries (seed "
        f"{args.seed}), embedded with `{args.model}` ({'bf16' if embedding['bf16'] else 'fp32'}, max length "
        f"{embedding['max_length']}); VectorIndex defaults: HNSW above "
        f"{DEFAULT_THRESHOLD:,} vectors, hnsw_m {DEFAULT_HNSW_M}, ef_search {DEFAULT_EF}; k = {K}; "
        f"{args.rounds} rounds; faiss threads {figures['faiss_threads']}"
    )
    text = markdown_header("Index recall on real embeddings: HNSW against exact search", payload, settings)
    text += markdown_table(HEADERS, table_rows(figures))
    text += (
        "\nrecall@k: share of the exact top k that the search found (a hit scoring at least the exact k-th "
        "best score, less 1e-5, counts). single ms: median of one `search` per query, every query once per "
        "round; batch ms/query: median `search_batch` of all queries, divided by their number; vs exact: "
        "exact's median over this row's (above 1: faster). build s: the first search, which builds the faiss "
        "structure.\n\nrecall@10 by the source of the query text:\n\n"
    )
    text += markdown_table(*source_rows(figures))
    return text


def int_list(text: str) -> list[int]:
    """`--ef-search`: comma-separated positive integers."""
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, found {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / DEFAULT_DATA_DIR_TEXT,
                        help=f"default: <repo>/{DEFAULT_DATA_DIR_TEXT}")  # fmt: skip
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="default: %(default)s")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--precision", default="auto", help="encoder precision (default: %(default)s)")
    parser.add_argument("--embed-threads", type=int, default=None, help="torch threads while embedding")
    parser.add_argument("--queries", type=int, default=1000, help="held-out texts searched for")
    parser.add_argument("--limit", type=int, default=None, help="index at most this many texts")
    parser.add_argument("--ef-search", type=int_list, default=[16, 32, 64, 128, 256],
                        help="comma-separated (default: 16,32,64,128,256); the default is added")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default=NAME)
    args = parser.parse_args(argv)
    data_dir, cache = args.data_dir.expanduser().resolve(), args.cache_dir.expanduser()
    corpus, missing = read_corpus(data_dir)
    if missing:
        print(f"{NAME}: not found under {data_dir}, left out: {', '.join(missing)}")
    indexed = min(len(corpus.texts) - args.queries, args.limit or len(corpus.texts))
    if indexed <= DEFAULT_THRESHOLD:
        print(
            f"{NAME}: skipped: {len(corpus.texts):,} distinct texts under {data_dir} leave "
            f"{max(indexed, 0):,} to index after {args.queries:,} queries, and an index of up to "
            f"{DEFAULT_THRESHOLD:,} vectors is exact (no HNSW to measure). Expected the datasets at "
            f"<repo>/{DEFAULT_DATA_DIR_TEXT} (pass --data-dir); the data is never copied into the repository."
        )
        return 0
    warn_if_busy()
    vectors, embedding = embed(corpus, args)
    figures = run(corpus, vectors, args)
    payload = {
        "command": command_line(),
        "created_at": utc_now(),
        "machine": machine_info(),
        "settings": vars(args) | {"out": str(args.out), "data_dir": str(data_dir), "cache_dir": str(cache)},
        "data": {"files": corpus.files, "missing": missing, "distinct_texts": len(corpus.texts)},
        "embedding": embedding,
        "figures": figures,
    }
    print_table(f"VectorIndex on {figures['indexed']:,} real embeddings", HEADERS, table_rows(figures))
    print_table("recall@10 by query source", *source_rows(figures))
    json_path, md_path = write_results(args.name, payload, markdown(payload, args), args.out)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
