"""Finance monitor benchmark: ingest throughput (feeds to stored rows) and `/v1/classify` throughput, one run.

1. Ingest: a local RSS server on loopback (`--feeds` feeds of `--items` unique stories each) is read by the
   real monitor (`open_monitor` + `Monitor.run_all()`): fetch, parse, dedup, classify, tag, store in a fresh
   SQLite file per repeat. Rows:

       pipeline-torch   the service as configured: PyTorch backend, `encoder.batch_size` (default 64)
       pipeline-onnx    the same with the ONNX Runtime backend (skipped where onnxruntime is missing)
       baseline-batch1  the same fetch, parse and store, classifying one story per forward pass
                        (`encoder.batch_size=1`, PyTorch): the naive way, the reference of the ratios

   docs/s is stored documents over the wall time of `run_all()` (median of `--repeats`); the model is loaded
   and warmed up before the clock starts. The classification share is the time of `model.classify` on the
   same texts, one call per feed as the ingestor makes them, timed separately (two feeds, scaled to all),
   over the ingest time; sources run concurrently, so it can exceed 100% when classification overlaps.

2. `/v1/classify`: the real app (`create_app`) served by uvicorn on loopback, `--requests` requests of
   `--request-texts` texts with `--concurrency` requests in flight (httpx async client): texts/s and the
   p50/p95 latency of one request, per backend.

Headlines: Financial PhraseBank sentences (`--data`, default ../shared/data/financial_phrasebank/train.csv)
when the file is there, else deterministic synthetic headlines. The model: `--model DIR`, else a quick
classifier trained once (3 epochs on examples/finance_sentiment.csv, for speed figures only, its quality
means nothing) into runs/bench-monitor-model (git-ignored) and reused.

    python bench/monitor.py                    # full run, about 5 minutes on 2 cores
    python bench/monitor.py --quick --out /tmp/bench-smoke     # about 1 minute

Results: bench/results/monitor.json and bench/results/monitor.md (see bench/README.md).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub/transformers are imported
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` beside this file, however it is run

import argparse
import asyncio
import importlib.metadata
import json
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from xml.sax.saxutils import escape

import httpx
import numpy as np
import uvicorn
from common import (
    DEFAULT_DATA_TEXT,
    DEFAULT_SEED,
    LABEL_COLUMN,
    REPO_ROOT,
    RESULTS_DIR,
    TEXT_COLUMN,
    command_line,
    fmt,
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
from sqlalchemy import distinct, func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from finance_sentiment import create_app
from finance_sentiment.database import Database
from finance_sentiment.dedup import content_hash
from finance_sentiment.monitor import open_monitor
from finance_sentiment.sentiment import SentimentModel
from finance_sentiment.settings import FetchSettings, FinanceSentimentSettings
from finance_sentiment.tables import Document, DocumentTag
from textcore import CoreError, EncoderSettings, TrainConfig, read_labelled
from textcore.artifacts import HEAD_FILE
from textcore.models import resolve_model
from textcore.training import train_classifier

NAME = "monitor"
GOAL_DOCS_PER_SECOND = 200.0  # the service's target on 2 CPU cores
BASELINE = "baseline-batch1"
EXAMPLES_CSV = REPO_ROOT / "examples" / "finance_sentiment.csv"
MODEL_CACHE = REPO_ROOT / "runs" / "bench-monitor-model"
FULL = {"feeds": 10, "items": 200, "repeats": 3, "requests": 40}
QUICK = {"feeds": 4, "items": 50, "repeats": 1, "requests": 12}
MAX_FEED_ITEMS = 500  # finance_sentiment.parsing.MAX_ITEMS: a feed's later entries are ignored
MAX_REQUEST_TEXTS = 256  # ClassifyIn's limit
SHARE_FEEDS = 2  # feeds on which the classification share is timed
COUNT_OPTIONS = {  # option: (argparse default, help); None defaults come from FULL or QUICK
    "--feeds": (None, "RSS feeds on the local server"),
    "--items": (None, "distinct stories per feed"),
    "--repeats": (None, "ingest runs per row"),
    "--requests": (None, "timed /v1/classify requests per backend"),
    "--request-texts": (32, "texts per request"),
    "--concurrency": (4, "requests in flight"),
    "--batch-size": (64, "encoder.batch_size of our rows"),
}
INGEST_HEADERS = ["row", "backend", "batch", "docs/s", "vs baseline", f"goal {GOAL_DOCS_PER_SECOND:.0f}/s"]
INGEST_HEADERS += ["classify share", "stored", "tagged", "entity"]
API_HEADERS = ["backend", "requests", "texts/request", "concurrency", "texts/s", "p50 ms", "p95 ms", "errors"]

# The tagger's config: keyword topics and company names that occur in PhraseBank and in the synthetic
# headlines (no topic descriptions, which would load a second, embedding model).
TOPICS = [
    {"name": "earnings", "keywords": ["profit", "net income", "revenue", "net sales", "operating loss"]},
    {"name": "deals", "keywords": ["acquisition", "acquire", "merger", "stake", "order"]},
    {"name": "jobs", "keywords": ["jobs", "layoffs", "staff", "employees"]},
]
ENTITIES = [
    {"name": "Nokia", "ticker": "NOK"},
    {"name": "Finnair"},
    {"name": "Stora Enso"},
    {"name": "UPM-Kymmene", "aliases": ["UPM"]},
    {"name": "Kone"},
    {"name": "Outokumpu"},
    {"name": "Acme", "ticker": "ACME"},
    {"name": "Globex"},
]
COMPANIES = ["Nokia", "Finnair", "Stora Enso", "UPM", "Kone", "Orion", "Acme", "Globex", "Initech", "Hooli"]
EVENTS = [
    "{c} raises full-year profit forecast by {n}%",
    "{c} shares fall {n}% after weak quarterly sales",
    "{c} to cut {n}0 jobs as demand slows",
    "{c} agrees acquisition of a rival for EUR {n} million",
    "{c} net income rises {n}% on strong orders",
    "{c} warns operating loss will widen by EUR {n} million",
    "{c} wins EUR {n} million order from a utility",
    "{c} revenue flat at EUR {n} million, in line with forecasts",
    "{c} sells {n}% stake in its logistics unit",
    "Regulator fines {c} EUR {n} million over reporting failures",
]


@dataclass(frozen=True)
class IngestVariant:
    name: str
    backend: str
    batch_size: int
    description: str


@dataclass(frozen=True)
class Workspace:
    """What every measurement is built from."""

    folder: Path  # temporary: databases, config file, registry
    model: Path
    device: str
    precision: str
    feed_url: str
    feeds: list[list[str]]  # headlines per feed


# ------------------------------------------------------------------------------------------------ inputs


def synthetic_headline(i: int) -> str:
    """The i-th of a deterministic series of distinct headlines (company, event and number from i)."""
    return EVENTS[(i // len(COMPANIES)) % len(EVENTS)].format(
        c=COMPANIES[i % len(COMPANIES)], n=i // (len(COMPANIES) * len(EVENTS)) + 2
    )


def load_headlines(data: Path, count: int, seed: int) -> tuple[list[str], str]:
    """`count` distinct headlines: PhraseBank sentences in a seeded order, topped up with synthetic ones."""
    if not data.is_file():
        return [synthetic_headline(i) for i in range(count)], "synthetic (no PhraseBank file)"
    texts = read_labelled(data, TEXT_COLUMN, LABEL_COLUMN).texts
    # distinct as the monitor sees them: its content hash ignores case and whitespace
    unique = list({content_hash(t, t): t for t in texts}.values())
    order = np.random.default_rng(seed).permutation(len(unique))
    picked = [unique[i] for i in order[:count]]
    picked += [synthetic_headline(i) for i in range(count - len(picked))]
    return picked, f"Financial PhraseBank sentences ({data})"


class FeedSite:
    """A news site on loopback: `/feeds/<i>.xml` RSS documents, rendered once, and a robots.txt."""

    def __init__(self, feeds: list[list[str]]) -> None:
        now = datetime.now(UTC)
        self.bodies = [self._rss(i, headlines, now) for i, headlines in enumerate(feeds)]

    @staticmethod
    def _rss(feed: int, headlines: list[str], now: datetime) -> bytes:
        items = "".join(
            f"<item><title>{escape(h)}</title><link>/news/{feed}/{j}</link>"
            f"<pubDate>{format_datetime(now - timedelta(minutes=j))}</pubDate></item>"
            for j, h in enumerate(headlines)
        )
        channel = f"<channel><title>Wire {feed}</title>{items}</channel>"
        return f'<?xml version="1.0"?><rss version="2.0">{channel}</rss>'.encode()

    def app(self) -> Starlette:
        async def feed(request: Request) -> Response:
            index: int = request.path_params["index"]
            if index >= len(self.bodies):
                return Response(status_code=404)
            return Response(self.bodies[index], media_type="application/rss+xml")

        async def robots(request: Request) -> Response:
            return Response("User-agent: *\nDisallow: /private\n", media_type="text/plain")

        return Starlette(routes=[Route("/feeds/{index:int}.xml", feed), Route("/robots.txt", robots)])


@contextmanager
def serve(app: ASGIApp, start_timeout: float = 120.0) -> Iterator[str]:
    """Serve `app` (lifespan included) with uvicorn on a free loopback port in a thread; yield the URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout
        while not server.started:  # set once the lifespan (model load) has finished
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"expected uvicorn to start within {start_timeout} s; it did not")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def ensure_model(model: Path | None) -> tuple[Path, str]:
    """The classifier folder to serve: `--model`, else the quick one (trained once, then reused)."""
    if model is not None:
        return model.expanduser().resolve(), "given with --model"
    if (MODEL_CACHE / HEAD_FILE).is_file():
        return MODEL_CACHE, f"quick model reused from {MODEL_CACHE} (for speed figures only)"
    print(
        f"training a quick classifier (3 epochs on {EXAMPLES_CSV.name}, speed figures only) ...", flush=True
    )
    MODEL_CACHE.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(MODEL_CACHE, ignore_errors=True)  # an interrupted earlier attempt
    tmp = Path(tempfile.mkdtemp(dir=MODEL_CACHE.parent, prefix=".bench-monitor-model."))
    try:
        data = read_labelled(EXAMPLES_CSV, "text", "label")
        config = TrainConfig(epochs=3, batch_size=8, learning_rate=4e-4, seed=0)
        train_classifier(data, config, tmp / "model", progress=False)
        (tmp / "model").replace(MODEL_CACHE)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return MODEL_CACHE, f"quick model trained into {MODEL_CACHE} (for speed figures only)"


def monitor_settings(
    ws: Workspace, db_name: str, backend: str, batch_size: int, config_file: Path | None
) -> FinanceSentimentSettings:
    # own loopback sites: allowed through the SSRF guard, and no per-host pause between the feeds' requests
    fetch = FetchSettings(allowed_networks=("127.0.0.0/8",), min_host_interval_s=0.0)
    return FinanceSentimentSettings(
        database_url=f"sqlite:///{ws.folder / db_name}",
        registry=ws.folder / "registry",
        model_path=ws.model,
        backend=backend,
        config_file=config_file,
        scheduler=False,
        fetch=fetch,
        encoder=EncoderSettings(device=ws.device, precision=ws.precision, batch_size=batch_size),
    )


def write_config(ws: Workspace) -> Path:
    """The monitor's config file: one RSS source per feed (each tagged `wire`), topics and entities."""
    sources = [
        {"name": f"wire {i}", "url": f"{ws.feed_url}/feeds/{i}.xml", "kind": "rss", "topics": ["wire"]}
        for i in range(len(ws.feeds))
    ]
    path = ws.folder / "monitor.json"
    path.write_text(
        json.dumps({"sources": sources, "topics": TOPICS, "entities": ENTITIES}), encoding="utf-8"
    )
    return path


# ------------------------------------------------------------------------------------------------ ingest


def count_rows(db: Database) -> dict[str, int]:
    """Stored documents, and how many have a label, any tag, a keyword topic and an entity."""
    tagged = select(func.count(distinct(DocumentTag.document_id)))
    queries = {
        "stored": select(func.count()).select_from(Document),
        "labelled": select(func.count()).where(Document.label != ""),
        "tagged": tagged,
        "keyword_topic": tagged.where(DocumentTag.kind == "topic", DocumentTag.name != "wire"),
        "entity": tagged.where(DocumentTag.kind == "entity"),
    }
    with db.session() as session:
        return {name: int(session.scalar(query) or 0) for name, query in queries.items()}


def time_classify(model: SentimentModel, feeds: list[list[str]]) -> float:
    """Seconds `model.classify` takes for every feed's stories, one call per feed as the ingestor makes them.

    Timed on the first two feeds (sequentially) and scaled to all stories: feeds are alike, and timing
    every one again would add a whole extra run's classification to the benchmark.
    """
    sample = feeds[:SHARE_FEEDS]
    started = time.perf_counter()
    for headlines in sample:
        model.classify(headlines)
    seconds = time.perf_counter() - started
    return seconds * sum(map(len, feeds)) / sum(map(len, sample))


async def ingest_once(settings: FinanceSentimentSettings, ws: Workspace, classify: bool) -> dict[str, Any]:
    """One `run_all()` on a fresh database; the model is loaded and warmed up before the clock starts."""
    async with open_monitor(settings) as monitor:  # loads the model
        model = monitor.models.current()
        await asyncio.to_thread(model.classify, ws.feeds[0][:8])  # first-call set-up is not ingest time
        started = time.perf_counter()
        reports = await monitor.run_all()
        seconds = time.perf_counter() - started
        rows: dict[str, Any] = await asyncio.to_thread(count_rows, monitor.db)
        # where the hardware is fast at bf16, precision auto runs the torch backend in bf16 (ONNX: fp32)
        rows["precision"] = "bf16" if getattr(model.predictor, "bf16", False) else "fp32"
        classify_s = await asyncio.to_thread(time_classify, model, ws.feeds) if classify else None
    failures = [
        f"source {r.source_id}: {r.status} {r.error or ''}".strip() for r in reports if r.status != "ok"
    ]
    return {"seconds": seconds, **rows, "classify_seconds": classify_s, "failures": failures}


async def run_ingest(variant: IngestVariant, ws: Workspace, repeats: int) -> dict[str, Any]:
    config_file = write_config(ws)
    runs = []
    for i in range(repeats):
        settings = monitor_settings(
            ws, f"{variant.name}-{i}.db", variant.backend, variant.batch_size, config_file
        )
        runs.append(await ingest_once(settings, ws, classify=i == repeats - 1))
        print(f"    repeat {i + 1}: {runs[-1]['stored']} docs in {runs[-1]['seconds']:.2f} s", flush=True)
    speeds = [r["stored"] / r["seconds"] for r in runs]
    seconds = statistics.median(r["seconds"] for r in runs)
    classify_s = runs[-1]["classify_seconds"]
    expected = sum(len(feed) for feed in ws.feeds)
    if any(r["stored"] != expected or r["failures"] for r in runs):
        print(
            f"warning: {variant.name}: expected {expected} stored documents per run; see the JSON",
            file=sys.stderr,
        )
    return {
        "description": variant.description,
        "backend": variant.backend,
        "batch_size": variant.batch_size,
        "precision": runs[-1]["precision"],
        "docs_per_second": statistics.median(speeds),
        "docs_per_second_runs": speeds,
        "seconds_runs": [r["seconds"] for r in runs],
        "expected_documents": expected,
        "classify_seconds": classify_s,
        "classify_share": None if classify_s is None else classify_s / seconds,
        "rows_last_run": {
            k: runs[-1][k] for k in ("stored", "labelled", "tagged", "keyword_topic", "entity")
        },
        "failures": [f for r in runs for f in r["failures"]],
    }


# -------------------------------------------------------------------------------------------- /v1/classify


async def classify_load(base_url: str, batches: list[list[str]], concurrency: int) -> dict[str, Any]:
    """Post every batch to /v1/classify with `concurrency` requests in flight; latencies and wall time."""
    latencies: list[float] = []
    errors: list[str] = []
    pending = iter(batches)  # shared by the workers: one event loop, so no lock is needed
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=300) as client:
        for batch in batches[:2]:  # warm-up, untimed
            (await client.post("/v1/classify", json={"texts": batch})).raise_for_status()

        async def worker() -> None:
            for batch in pending:
                started = time.perf_counter()
                response = await client.post("/v1/classify", json={"texts": batch})
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200 or len(response.json()) != len(batch):
                    errors.append(f"{response.status_code}: {response.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    p50, p95 = np.percentile(np.asarray(latencies) * 1000, [50, 95])
    texts = sum(len(b) for b in batches)
    return {
        "requests": len(batches),
        "texts": texts,
        "wall_seconds": wall,
        "texts_per_second": texts / wall,
        "requests_per_second": len(batches) / wall,
        "latency_ms_p50": float(p50),
        "latency_ms_p95": float(p95),
        "latency_ms_mean": 1000 * statistics.fmean(latencies),
        "errors": errors,
    }


def run_api(backend: str, ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    headlines = [h for feed in ws.feeds for h in feed]
    size = args.request_texts
    batches = [
        [headlines[(r * size + k) % len(headlines)] for k in range(size)] for r in range(args.requests)
    ]
    settings = monitor_settings(ws, f"api-{backend}.db", backend, args.batch_size, None)
    with serve(create_app(settings)) as base_url:
        result = asyncio.run(classify_load(base_url, batches, args.concurrency))
    return {"max_workers": settings.max_workers, "max_queue": settings.max_queue, **result}


# ------------------------------------------------------------------------------------------------ the run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="trained classifier folder (default: the quick one)")
    parser.add_argument("--data", type=Path, help=f"headlines (default: {DEFAULT_DATA_TEXT}, else synthetic)")
    parser.add_argument("--quick", action="store_true", help=f"about a minute: {QUICK} unless given")
    for option, (default, text) in COUNT_OPTIONS.items():
        shown = FULL.get(option.strip("-"), default)
        parser.add_argument(option, type=int, default=default, help=f"{text} (default: {shown})")
    parser.add_argument("--backends", default="torch,onnx", help="our rows' backends (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: %(default)s)")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"], help="torch backend")
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="headline order (default: %(default)s)"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="results folder (default: bench/results)"
    )
    parser.add_argument("--name", default=NAME, help="results file stem (default: %(default)s)")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if any(getattr(args, option[2:].replace("-", "_")) < 1 for option in COUNT_OPTIONS):
        parser.error(f"{', '.join(COUNT_OPTIONS)} must be at least 1")
    if args.items > MAX_FEED_ITEMS or args.request_texts > MAX_REQUEST_TEXTS:
        parser.error(
            f"expected --items at most {MAX_FEED_ITEMS} (the feed parser's limit) and --request-texts at "
            f"most {MAX_REQUEST_TEXTS} (the API's); found {args.items} and {args.request_texts}"
        )
    args.backend_names = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not args.backend_names or set(args.backend_names) - {"torch", "onnx"}:
        parser.error(f"--backends: expected torch and/or onnx, found {args.backends!r}")
    return args


def variants(args: argparse.Namespace) -> list[IngestVariant]:
    ours = [
        IngestVariant(f"pipeline-{b}", b, args.batch_size, f"the monitor, {b}, batch {args.batch_size}")
        for b in args.backend_names
    ]
    return [*ours, IngestVariant(BASELINE, "torch", 1, "same fetch, parse, tag, store; one story per pass")]


def ingest_row(name: str, v: dict[str, Any], base: float | None) -> list[str]:
    share, rows, speed = v["classify_share"], v["rows_last_run"], v["docs_per_second"]
    cells: tuple[Any, ...] = (name, f"{v['backend']} ({v['precision']})", v["batch_size"], fmt(speed))
    cells += (f"{speed / base:.2f}x" if base else "-", "met" if speed >= GOAL_DOCS_PER_SECOND else "not met")
    cells += ("-" if share is None else f"{share:.0%}", f"{rows['stored']}/{v['expected_documents']}")
    return [str(c) for c in (*cells, rows["tagged"], rows["entity"])]


def api_row(backend: str, v: dict[str, Any], s: dict[str, Any]) -> list[str]:
    cells: tuple[Any, ...] = (backend, v["requests"], s["request_texts"], s["concurrency"])
    cells += (fmt(v["texts_per_second"]), fmt(v["latency_ms_p50"]), fmt(v["latency_ms_p95"]))
    return [str(c) for c in (*cells, len(v["errors"]))]


def render(payload: dict[str, Any]) -> tuple[list[list[str]], list[list[str]], str]:
    """Rows of the ingest and the API tables, and the settings line."""
    base = payload["ingest"].get(BASELINE, {}).get("docs_per_second")
    s = payload["settings"]
    ingest = [ingest_row(name, v, base) for name, v in payload["ingest"].items()]
    api = [api_row(backend, v, s) for backend, v in payload["classify_api"].items()]
    settings = (
        f"model {s['model']} ({s['model_origin']}); {s['feeds']} feeds x {s['items']} stories of "
        f"{s['headlines']}; ingest: median of {s['repeats']} run(s), fresh SQLite each; /v1/classify: "
        f"{s['requests']} requests of {s['request_texts']} texts, concurrency {s['concurrency']}; "
        f"device {s['device']}, precision {s['precision']}"
    )
    return ingest, api, settings


def goal_line(payload: dict[str, Any]) -> str:
    ours = {k: v["docs_per_second"] for k, v in payload["ingest"].items() if k != BASELINE}
    goal = f"Goal: at least {GOAL_DOCS_PER_SECOND:.0f} documents/s on 2 cores"
    if not ours:
        return f"{goal}; no pipeline row ran."
    best = max(ours, key=ours.__getitem__)
    verdict = "met" if ours[best] >= GOAL_DOCS_PER_SECOND else "not met"
    cpus = payload["machine"]["cpu_count"]
    return f"{goal}; best: {best}, {ours[best]:,.1f} docs/s on {cpus} CPU(s): {verdict}."


def markdown(payload: dict[str, Any]) -> str:
    ingest, api, settings = render(payload)
    parts = [
        markdown_header("Finance monitor: ingest and /v1/classify throughput", payload, settings),
        f"{goal_line(payload)}\n\n## Ingest: RSS feeds on loopback to classified, tagged rows in SQLite\n\n",
        markdown_table(INGEST_HEADERS, ingest),
        "\n## `POST /v1/classify` on loopback (uvicorn, httpx async client)\n\n",
        markdown_table(API_HEADERS, api),
    ]
    if payload["skipped"]:
        parts.append("\nSkipped: " + "; ".join(f"{k}: {v}" for k, v in payload["skipped"].items()) + ".\n")
    parts.append(
        "\ndocs/s: stored documents over the wall time of `Monitor.run_all()` (fetch, parse, dedup, "
        "classify, tag, store), median of the runs; model load and warm-up excluded. classify share: "
        "`model.classify` on the same texts, one call per feed, timed separately on two feeds and scaled, "
        "over the median ingest time (sources run concurrently: above 100% means classifications "
        "overlapped). stored: documents in the database after the last run / stories served; tagged, "
        "entity: documents with any tag, with an entity tag. texts/s: texts over the wall time of all "
        "timed requests (after two untimed warm-up requests); p50/p95: latency of one request.\n"
    )
    return "".join(parts)


def skip_reason(args: argparse.Namespace, data: Path) -> str | None:
    """Why the benchmark cannot run here (the caller exits 0), or None."""
    if args.data is not None and not data.is_file():
        return f"no headline file at {data} (leave out --data for PhraseBank or synthetic headlines)"
    if args.model is not None and not (args.model / HEAD_FILE).is_file():
        return f"{args.model} is not a trained classifier folder (no {HEAD_FILE})"
    if args.model is None and not (MODEL_CACHE / HEAD_FILE).is_file():
        try:
            resolve_model("minilm")
        except CoreError as exc:
            return f"no --model, and no base model to train a quick one ({exc.message})"
    return None


def measure(args: argparse.Namespace, model: Path, feeds: list[list[str]]) -> dict[str, dict[str, Any]]:
    """Every ingest row, then /v1/classify per backend, against one feed server."""
    out: dict[str, dict[str, Any]] = {"ingest": {}, "classify_api": {}, "skipped": {}}
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp, serve(FeedSite(feeds).app()) as url:
        ws = Workspace(Path(tmp), model, args.device, args.precision, url, feeds)
        for variant in variants(args):
            print(f"--- ingest {variant.name}: {variant.description}", flush=True)
            try:
                out["ingest"][variant.name] = asyncio.run(run_ingest(variant, ws, args.repeats))
            except ImportError as exc:  # onnxruntime is not installed
                out["skipped"][variant.name] = f"backend {variant.backend} unavailable ({exc})"
                print(f"    skipped: {out['skipped'][variant.name]}")
        for backend in args.backend_names:
            if f"pipeline-{backend}" not in out["skipped"]:
                print(f"--- /v1/classify, backend {backend}", flush=True)
                out["classify_api"][backend] = run_api(backend, ws, args)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = resolve_data(args.data)
    reason = skip_reason(args, data)
    if reason is not None:
        print(f"{NAME}: skipped: {reason}")
        return 0
    quiet_transformers()
    warn_if_busy()
    machine = machine_info()
    try:
        machine["onnxruntime"] = importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        machine["onnxruntime"] = None
    model, origin = ensure_model(args.model)
    headlines, source = load_headlines(data, args.feeds * args.items, args.seed)
    feeds = [headlines[i * args.items : (i + 1) * args.items] for i in range(args.feeds)]
    results = measure(args, model, feeds)
    keys: tuple[str, ...] = ("feeds", "items", "repeats", "batch_size", "requests", "request_texts")
    keys += ("concurrency", "device", "precision", "seed", "quick")
    settings: dict[str, Any] = {"model": str(model), "model_origin": origin, "headlines": source}
    settings |= {k: getattr(args, k) for k in keys}
    settings |= {"database": "sqlite, fresh per run", "topics": TOPICS, "entities": ENTITIES}
    payload: dict[str, Any] = {"benchmark": NAME, "created_at": utc_now(), "command": command_line()}
    payload |= {"machine": machine, "goal_docs_per_second": GOAL_DOCS_PER_SECOND, "settings": settings}
    payload |= results
    ingest, api, line = render(payload)
    print_table(f"Ingest: {line}", INGEST_HEADERS, ingest)
    print_table("POST /v1/classify", API_HEADERS, api)
    print(goal_line(payload))
    json_path, md_path = write_results(args.name, payload, markdown(payload), args.out)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
