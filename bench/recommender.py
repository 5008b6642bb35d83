"""Recommender benchmark: catalog embedding throughput, `/v1/score` and `/v1/recommend` latency, one run.

1. Embedding: a fresh service (uvicorn subprocess on loopback, base MiniLM zero-shot) receives the first
   `--embed-items` synthetic products through `POST /v1/items` in batches of `--batch`; items/s is the
   items embedded over the wall time of those requests (one untimed warm-up batch first). A second row
   embeds some of the same texts with `TextInterestModel.item_vectors` in process (no HTTP, no database).
2. The rest of the `--items` catalog (default 100,000) is NOT embedded: its rows are stored, and its vectors
   (perturbed copies of the real MiniLM vectors, re-normalised) put into the index, by the service's own
   `ItemCatalog.upsert` with a stand-in embedding function, writing the index file and sidecar the service
   loads at start-up. The API cannot take precomputed vectors, so this is the only way short of embedding
   all of them. The output says which items were embedded for real and which are synthetic.
3. A second server starts on that catalog; `POST /v1/events` stores background behaviour (`--users` users)
   and `--bench-users` users with a 20-item history each. Then `--requests` requests per endpoint at
   concurrency 1 and 4 (httpx async client): `POST /v1/score` with 1,000 candidates (goal p95 < 30 ms on
   2 cores) and `GET /v1/recommend?user_id=&k=10&exclude_seen=true` (goal p95 < 50 ms over 100,000 items).
   Baselines in the same run: brute-force numpy scoring of the same candidates (and over the whole
   catalog for recommend) in process, and the service's `Recommender` called in process without HTTP.

`--threads N` sets OMP/OPENBLAS/MKL_NUM_THREADS for this process and the server and torch's thread count in
both; the JSON records them either way.

    python bench/recommender.py                          # full run
    python bench/recommender.py --quick --out /tmp/bench-smoke

Results: bench/results/recommender.json and bench/results/recommender.md (see bench/README.md).
"""

from __future__ import annotations

import os
import sys

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _threads_option(argv: list[str]) -> int | None:
    """`--threads N` read before numpy and torch are imported (their thread pools read the env once)."""
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--threads" and i + 1 < len(argv) else arg.partition("--threads=")[2]
        if value:
            return int(value) if value.isdigit() and int(value) > 0 else None  # argparse reports bad ones
    return None


_THREADS = _threads_option(sys.argv[1:])
if _THREADS is not None:
    for _name in THREAD_ENV:
        os.environ[_name] = str(_THREADS)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402 - after the thread settings

# This file is named like the service's package: keep its folder off the front of the path, so that
# `import recommender` finds the service, and put it at the end, for `common` beside this file.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import (  # noqa: E402
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

from recommender.catalog import ItemCatalog  # noqa: E402
from recommender.database import Database  # noqa: E402
from recommender.item_records import ItemRecord  # noqa: E402
from recommender.profiles import Query  # noqa: E402
from recommender.settings import RecommenderSettings  # noqa: E402
from recommender.startup import model_fingerprint, open_recommender  # noqa: E402
from textcore import CoreError, EncoderSettings, VectorIndex  # noqa: E402
from textcore.models import resolve_model  # noqa: E402


def _words(text: str, sep: str = ", ") -> list[str]:
    return text.split(sep)


NAME = "recommender"
GOAL_SCORE_MS, GOAL_RECOMMEND_MS = 30.0, 50.0  # p95 on 2 CPU cores
FULL = {"items": 100_000, "embed_items": 5_000, "requests": 200, "users": 2_000, "direct_items": 1_000}
QUICK = {"items": 5_000, "embed_items": 500, "requests": 40, "users": 200, "direct_items": 200}
HISTORY, CANDIDATES, K, CONCURRENCY = 20, 1_000, 10, (1, 4)
WARMUP_ITEMS, WARMUP_REQUESTS, CANDIDATE_SETS, FULL_CATALOG_UPSERTS = 64, 3, 10, 2
NOISE = 0.6  # synthetic vector = real vector + noise of this norm, re-normalised (cosine to it ~0.86)
BRANDS = _words("Acme Northwind Contoso Globex Initech Umbrella Hooli Tyrell Vandelay", " ")
ADJECTIVES = _words(
    "compact professional wireless lightweight heavy-duty portable ergonomic waterproof rechargeable "
    "stainless digital adjustable foldable premium",
    " ",
)
PRODUCTS = [  # (noun, category)
    pair.partition(":")[::2]
    for pair in _words(
        "microscope:lab, pipette set:lab, centrifuge:lab, hiking backpack:outdoor, tent:outdoor, "
        "water bottle:outdoor, headphones:electronics, keyboard:electronics, monitor arm:electronics, "
        "coffee grinder:kitchen, chef's knife:kitchen, blender:kitchen, yoga mat:sports, "
        "running shoes:sports, desk lamp:home, office chair:home, telescope:optics, binoculars:optics, "
        "soldering station:tools, cordless drill:tools"
    )
]
MATERIALS = _words("aluminium, bamboo, carbon fibre, recycled plastic, steel, glass, silicone, oak")
USES = _words(
    "home labs, field work, daily commuting, small kitchens, students, professionals, travel, classrooms, "
    "workshops, long weekends"
)
FEATURES = _words(
    "two-year warranty, USB-C charging, dishwasher safe, tool-free assembly, low noise, auto shut-off, "
    "anti-slip base, replaceable parts, magnetic mount, carry case included"
)
LATENCY_HEADERS = _words("variant|concurrency|requests|p50 ms|p95 ms|mean ms|req/s|p50 vs numpy|goal", "|")
EMBED_HEADERS = ["how", "items", "seconds", "items/s", "note"]


@dataclass(frozen=True)
class Call:
    """One HTTP request of a load run, and how many results a correct answer has."""

    method: str
    path: str
    expected: int
    body: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    forbidden: frozenset[str] = field(default_factory=frozenset)  # ids that must not come back (seen items)


@dataclass(frozen=True)
class Workload:
    """The users, their histories and the candidate sets every variant is timed on."""

    users: list[str]
    histories: dict[str, list[str]]  # bench user -> 20 item ids, oldest first
    candidates: list[list[str]]  # CANDIDATE_SETS sets of CANDIDATES ids

    def request(self, r: int) -> tuple[str, list[str]]:
        """The user and the candidates of the r-th request."""
        return self.users[r % len(self.users)], self.candidates[r % len(self.candidates)]


# ------------------------------------------------------------------------------------------------ inputs


def products(n: int, seed: int) -> list[dict[str, Any]]:
    """`n` deterministic synthetic products (`POST /v1/items` bodies): id, title, text, one category."""
    rng = np.random.default_rng(seed)
    pick = {
        name: rng.integers(0, len(words), n)
        for name, words in (
            ("brand", BRANDS),
            ("adj", ADJECTIVES),
            ("adj2", ADJECTIVES),
            ("product", PRODUCTS),
            ("material", MATERIALS),
            ("use", USES),
            ("f1", FEATURES),
            ("f2", FEATURES),
        )
    }
    grams = rng.integers(80, 4000, n)
    out = []
    for i in range(n):
        noun, category = PRODUCTS[pick["product"][i]]
        title = f"{BRANDS[pick['brand'][i]]} {ADJECTIVES[pick['adj'][i]]} {noun} {chr(65 + i % 26)}{i % 997}"
        text = (
            f"A {ADJECTIVES[pick['adj2'][i]]} {MATERIALS[pick['material'][i]]} {noun} for "
            f"{USES[pick['use'][i]]}. {FEATURES[pick['f1'][i]].capitalize()}, {FEATURES[pick['f2'][i]]}; "
            f"weighs {grams[i]} g."
        )
        out.append({"id": f"item-{i:06d}", "title": title, "text": text, "categories": [category]})
    return out


def events(ids: list[str], embedded: int, args: argparse.Namespace) -> tuple[list[dict[str, Any]], Workload]:
    """Background clicks (popularity-skewed) and the bench users' 20-item histories of real-embedded items."""
    rng = np.random.default_rng(args.seed + 1)
    order = rng.permutation(len(ids))
    weights = 1.0 / (np.arange(len(ids)) + 10.0)  # a long tail: the k-th most popular ~ 1/(k + 10)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    bodies: list[dict[str, Any]] = []
    for n in range(args.users):
        items = order[rng.choice(len(ids), 10, replace=False, p=weights / weights.sum())]
        bodies += [_click(f"bg-{n}", ids[int(i)], start + timedelta(hours=h)) for h, i in enumerate(items)]
    histories = {
        f"bench-{n}": [ids[int(i)] for i in rng.choice(embedded, HISTORY, replace=False)]
        for n in range(args.bench_users)
    }
    for user, history in histories.items():
        bodies += [_click(user, item, start + timedelta(days=1, minutes=m)) for m, item in enumerate(history)]
    candidates = [
        [ids[int(i)] for i in rng.choice(len(ids), CANDIDATES, replace=False)] for _ in range(CANDIDATE_SETS)
    ]
    return bodies, Workload(list(histories), histories, candidates)


def _click(user: str, item: str, when: datetime) -> dict[str, Any]:
    return {"user_id": user, "item_id": item, "timestamp": when.isoformat(), "type": "click"}


# ------------------------------------------------------------------------------------------------ server


def service_settings(folder: Path, device: str, precision: str) -> RecommenderSettings:
    """The service's settings, built the same way by the server subprocess and by this process."""
    return RecommenderSettings(
        database_url=f"sqlite:///{folder / 'recommender.db'}",
        index_path=folder / "index" / "items.index.npz",
        encoder=EncoderSettings(device=device, precision=precision),
    )


def thread_facts() -> dict[str, Any]:
    """Thread settings of this process: torch's intra-op threads and the env the BLAS/OpenMP pools read."""
    return {"torch_threads": torch.get_num_threads(), **{k: os.environ.get(k) for k in THREAD_ENV}}


def run_server(args: argparse.Namespace) -> int:
    """The `--serve-fd` side: the real app under uvicorn on the socket the parent bound."""
    import uvicorn  # noqa: PLC0415 - only the server side needs it

    from recommender.app import create_app  # noqa: PLC0415

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = service_settings(args.workdir, args.device, args.precision)
    facts = thread_facts() | {"pid": os.getpid(), "max_workers": settings.max_workers}
    Path(args.info_out).write_text(json.dumps(facts | {"max_queue": settings.max_queue}), encoding="utf-8")
    config = uvicorn.Config(create_app(settings), lifespan="on", log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=args.serve_fd)])
    return 0


@contextmanager
def server(args: argparse.Namespace, folder: Path, label: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Start the app in a uvicorn subprocess on a free loopback port; yield its URL and its facts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    info, log_path = folder / f"server-{label}.json", folder / f"server-{label}.log"
    options: dict[str, object] = {"--serve-fd": sock.fileno(), "--workdir": folder, "--info-out": info}
    options |= {"--device": args.device, "--precision": args.precision}
    if args.threads is not None:
        options["--threads"] = args.threads
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        *(str(x) for pair in options.items() for x in pair),
    ]
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(command, pass_fds=[sock.fileno()], stdout=log, stderr=subprocess.STDOUT)
    started = time.perf_counter()
    try:
        while not _ready(url):
            if process.poll() is not None or time.perf_counter() - started > args.start_timeout:
                tail = log_path.read_text(encoding="utf-8")[-3000:]
                raise RuntimeError(f"expected the {label} server to become ready; it did not:\n{tail}")
            time.sleep(0.2)
        facts = json.loads(info.read_text(encoding="utf-8")) | {
            "startup_seconds": time.perf_counter() - started
        }
        yield url, facts
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        sock.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


# ------------------------------------------------------------------------------------------------ phases


def embed_through_api(url: str, items: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    """Post the items in batches; items/s over the timed batches (after one untimed warm-up batch)."""
    seconds: list[float] = []
    with httpx.Client(base_url=url, trust_env=False, timeout=1800) as client:
        for start in [0, *range(WARMUP_ITEMS, len(items), batch)]:
            chunk = items[start : start + (batch if start else WARMUP_ITEMS)]
            began = time.perf_counter()
            response = client.post("/v1/items", json={"items": chunk})
            if response.status_code != 200 or response.json()["embedded"] != len(chunk):
                raise RuntimeError(
                    f"POST /v1/items: expected {len(chunk)} embedded, got {response.text[:300]}"
                )
            if start:  # the first WARMUP_ITEMS are the untimed warm-up
                seconds.append(time.perf_counter() - began)
    timed, total = len(items) - WARMUP_ITEMS, sum(seconds)
    return {
        "items": timed,
        "warmup_items": WARMUP_ITEMS,
        "batch": batch,
        "seconds": total,
        "items_per_second": timed / total,
        "batch_seconds": seconds,
    }


class PerturbedCopies:
    """A stand-in for the model's item tower: i-th text -> real vector (i mod n) plus noise, normalised."""

    def __init__(self, real: np.ndarray, seed: int) -> None:
        self.real, self.done = real, 0  # real: (n, dim) float32
        self.rng = np.random.default_rng(seed)

    def __call__(self, texts: list[str]) -> np.ndarray:
        rows = self.real[(self.done + np.arange(len(texts))) % len(self.real)]
        noise = self.rng.standard_normal(rows.shape).astype(np.float32) * NOISE / np.sqrt(rows.shape[1])
        self.done += len(texts)
        out = rows + noise
        unit: np.ndarray = (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)
        return unit  # (len(texts), dim) float32


def fill_catalog(settings: RecommenderSettings, items: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    """Store `items` and synthetic vectors through `ItemCatalog.upsert` (the server is stopped)."""
    db = Database(settings.database_url)
    try:
        saved = VectorIndex.load(settings.index_path)  # what the embedding server wrote
        real = np.stack([saved.get(i) for i in saved.ids()])  # (embedded, dim) float32
        embed = PerturbedCopies(real, seed)
        fingerprint = model_fingerprint(settings)  # the service's: its next start adopts the file
        catalog = ItemCatalog(db, embed, saved.dim, settings.index_path, fingerprint, batch_size=4096)
        if catalog.sync() != 0:  # the saved index must match the database: nothing real gets a fake vector
            raise RuntimeError("expected the saved index to match the catalog; sync wanted to embed items")
        records = [ItemRecord(b["id"], b["title"], b["text"], b["categories"]) for b in items]
        began = time.perf_counter()
        report = catalog.upsert(records)
        seconds = time.perf_counter() - began
    finally:
        db.dispose()
    return {"items": report.created, "seconds": seconds, "vectors": f"perturbed copies (noise {NOISE})"}


def post_events(url: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    began = time.perf_counter()
    with httpx.Client(base_url=url, trust_env=False, timeout=600) as client:
        for start in range(0, len(bodies), 10_000):  # the service's max_events_per_request
            client.post("/v1/events", json={"events": bodies[start : start + 10_000]}).raise_for_status()
    return {"events": len(bodies), "seconds": time.perf_counter() - began}


def calls(work: Workload, requests: int) -> dict[str, list[Call]]:
    """The score and recommend requests, the same for every concurrency."""
    score, recommend = [], []
    for r in range(requests):
        user, candidates = work.request(r)
        score.append(Call("POST", "/v1/score", CANDIDATES, body={"user_id": user, "items": candidates}))
        params = {"user_id": user, "k": K, "exclude_seen": "true"}
        seen = frozenset(work.histories[user])
        recommend.append(Call("GET", "/v1/recommend", K, params=params, forbidden=seen))
    return {"score": score, "recommend": recommend}


async def load(url: str, batch: list[Call], concurrency: int) -> dict[str, Any]:
    """Send every call with `concurrency` in flight; latency is until the whole body has arrived."""
    latencies: list[float] = []
    answers: list[tuple[Call, int, bytes]] = []  # checked after the run: parsing JSON would delay the others
    pending = iter(batch)  # shared by the workers: one event loop, so no lock is needed
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=600, limits=limits) as client:

        async def worker() -> None:
            for call in pending:
                began = time.perf_counter()
                response = await client.request(call.method, call.path, json=call.body, params=call.params)
                latencies.append(time.perf_counter() - began)
                answers.append((call, response.status_code, response.content))

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - began
    errors = [error for answer in answers for error in _check(*answer)]
    return {
        **latency_stats(latencies),
        "concurrency": concurrency,
        "requests_per_second": len(batch) / wall,
        "response_bytes": len(answers[0][2]),
        "errors": errors,
    }


def _check(call: Call, status: int, content: bytes) -> list[str]:
    if status != 200:
        return [f"{call.path}: {status} {content[:200]!r}"]
    ids = [row["item_id"] for row in json.loads(content)]
    seen = call.forbidden & set(ids)
    if len(ids) != call.expected or seen:
        return [f"{call.path}: expected {call.expected} items and none seen, found {len(ids)}, seen {seen}"]
    return []


def latency_stats(seconds: Sequence[float]) -> dict[str, Any]:
    p50, p95 = np.percentile(np.asarray(seconds) * 1000, [50, 95])
    return {
        "requests": len(seconds),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "mean_ms": 1000 * statistics.fmean(seconds),
    }


def measure_http(url: str, work: Workload, requests: int) -> dict[str, Any]:
    """Warm-up (the first recommend builds the faiss index, timed apart), then each endpoint at 1 and 4."""
    out: dict[str, Any] = {"first_request_ms": {}, "score": {}, "recommend": {}}
    for name, batch in calls(work, WARMUP_REQUESTS).items():
        began = time.perf_counter()
        first = asyncio.run(load(url, batch[:1], 1))
        out["first_request_ms"][name] = 1000 * (time.perf_counter() - began)
        if first["errors"]:
            raise RuntimeError(f"{name}: {first['errors']}")
        asyncio.run(load(url, batch[1:], 1))
    for name, batch in calls(work, requests).items():
        for concurrency in CONCURRENCY:
            print(f"    {name}, concurrency {concurrency}", flush=True)
            out[name][f"http-c{concurrency}"] = asyncio.run(load(url, batch, concurrency))
    return out


def upsert_into_full_catalog(url: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """`POST /v1/items` of a few new items into the full catalog (each upsert rewrites the index file)."""
    seconds = []
    size = len(items) // FULL_CATALOG_UPSERTS
    with httpx.Client(base_url=url, trust_env=False, timeout=600) as client:
        for start in range(0, size * FULL_CATALOG_UPSERTS, size):
            began = time.perf_counter()
            client.post("/v1/items", json={"items": items[start : start + size]}).raise_for_status()
            seconds.append(time.perf_counter() - began)
    return {"items_per_request": size, "seconds": seconds}


def numpy_baseline(matrix: np.ndarray, rows: dict[str, int], work: Workload, requests: int) -> dict[str, Any]:
    """Brute force in process: recency-weighted mean profile, then candidate dot products (or all items)."""
    decay = 0.8 ** np.arange(HISTORY - 1, -1, -1, dtype=np.float32)  # the model's default profile
    score: list[float] = []
    recommend: list[float] = []
    for r in range(requests):
        user, candidates = work.request(r)
        began = time.perf_counter()
        profile = decay @ matrix[[rows[i] for i in work.histories[user]]]
        scores = matrix[[rows[i] for i in candidates]] @ (profile / np.linalg.norm(profile))  # (1000,)
        best = [candidates[int(i)] for i in np.argsort(-scores)]
        score.append(time.perf_counter() - began)
        began = time.perf_counter()
        profile = decay @ matrix[[rows[i] for i in work.histories[user]]]
        everything = matrix @ (profile / np.linalg.norm(profile))  # (n_items,)
        everything[[rows[i] for i in work.histories[user]]] = -np.inf  # exclude seen
        top = np.argpartition(-everything, K)[:K]
        recommended = [int(i) for i in top[np.argsort(-everything[top])]]
        recommend.append(time.perf_counter() - began)
        assert len(best) == CANDIDATES and len(recommended) == K
    return {"score": latency_stats(score), "recommend": latency_stats(recommend)}


def measure_in_process(
    args: argparse.Namespace, settings: RecommenderSettings, work: Workload, texts: list[str]
) -> dict[str, Any]:
    """The service's `Recommender` without HTTP, the numpy baseline, and the model embedding directly."""
    out: dict[str, Any] = {"score": {}, "recommend": {}}
    with open_recommender(settings) as rec:
        ids = rec.catalog.index.ids()
        matrix, rows = rec.catalog.vectors(ids), {item: n for n, item in enumerate(ids)}
        for name, value in numpy_baseline(matrix, rows, work, args.requests).items():
            out[name]["numpy"] = value | {"concurrency": 1}
        began = time.perf_counter()
        rec.recommend(Query(user_id=work.users[0]), K)  # builds the faiss structure
        out["first_recommend_ms"] = 1000 * (time.perf_counter() - began)
        timed: dict[str, list[float]] = {"score": [], "recommend": []}
        for r in range(args.requests):
            user, candidates = work.request(r)
            began = time.perf_counter()
            rec.score(Query(user_id=user), candidates)
            timed["score"].append(time.perf_counter() - began)
            began = time.perf_counter()
            rec.recommend(Query(user_id=user), K, exclude_seen=True)
            timed["recommend"].append(time.perf_counter() - began)
        for name, seconds in timed.items():
            out[name]["in-process"] = latency_stats(seconds) | {"concurrency": 1}
        rec.model.item_vectors(texts[:WARMUP_ITEMS])
        began = time.perf_counter()
        rec.model.item_vectors(texts)
        took = time.perf_counter() - began
        out["direct_embedding"] = {
            "items": len(texts),
            "seconds": took,
            "items_per_second": len(texts) / took,
        }
        out["hnsw"] = rec.catalog.index.kind
    return out


# ------------------------------------------------------------------------------------------------ the run


def run_phases(args: argparse.Namespace, folder: Path, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Embed through the API, fill the catalog, time the endpoints over HTTP, then in process."""
    settings = service_settings(folder, args.device, args.precision)
    catalog, extra = items[: args.items], items[args.items :]
    out: dict[str, Any] = {"servers": {}}
    print(f"--- embedding {args.embed_items} items through POST /v1/items", flush=True)
    with server(args, folder, "embed") as (url, facts):
        out["servers"]["embed"] = facts
        out["embedding"] = embed_through_api(url, catalog[: args.embed_items], args.batch)
    print(f"--- storing {args.items - args.embed_items} more items with synthetic vectors", flush=True)
    fill = (
        fill_catalog(settings, catalog[args.embed_items :], args.seed)
        if args.items > args.embed_items
        else None
    )
    out["catalog"] = {"items": args.items, "embedded_for_real": args.embed_items, "synthetic": fill}
    bodies, work = events([item["id"] for item in catalog], args.embed_items, args)
    print("--- serving the full catalog: events, then /v1/score and /v1/recommend", flush=True)
    with server(args, folder, "serve") as (url, facts):
        out["servers"]["serve"] = facts
        out["events"] = post_events(url, bodies)
        out["http"] = measure_http(url, work, args.requests)
        out["upsert_full_catalog"] = upsert_into_full_catalog(url, extra)
    print("--- in process: numpy baseline, Recommender without HTTP, model.item_vectors", flush=True)
    texts = [ItemRecord(b["id"], b["title"], b["text"]).encoder_text for b in catalog[: args.direct_items]]
    out["in_process"] = measure_in_process(args, settings, work, texts)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"smoke settings: {QUICK} unless given")
    for key, text in (
        ("items", "catalog size"),
        ("embed_items", "items embedded for real through the API"),
        ("requests", "timed requests per endpoint and concurrency"),
        ("users", "background users (10 clicks each)"),
        ("direct_items", "items embedded in process by model.item_vectors"),
    ):
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, help=f"{text} (default: {FULL[key]})")
    parser.add_argument("--batch", type=int, default=500, help="items per POST /v1/items (default: 500)")
    parser.add_argument("--bench-users", type=int, default=20, help="timed users with 20-item histories")
    parser.add_argument("--threads", type=int, help="torch threads and OMP/OPENBLAS/MKL_NUM_THREADS")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: %(default)s)")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--seed", type=int, default=42, help="products, events, candidates (default: 42)")
    parser.add_argument(
        "--start-timeout", type=float, default=900.0, help="seconds a server may take to start"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="results folder (default: bench/results)"
    )
    parser.add_argument("--name", default=NAME, help="results file stem (default: %(default)s)")
    for hidden in ("--serve-fd", "--workdir", "--info-out"):  # the server subprocess's side
        parser.add_argument(hidden, type=int if hidden == "--serve-fd" else Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not HISTORY + WARMUP_ITEMS <= args.embed_items <= args.items or args.items < CANDIDATES:
        parser.error(
            f"expected {HISTORY + WARMUP_ITEMS} <= --embed-items <= --items and --items >= {CANDIDATES}; "
            f"found {args.embed_items} and {args.items}"
        )
    if not 1 <= args.batch <= 1000 or min(args.requests, args.users, args.bench_users, args.direct_items) < 1:
        parser.error("expected --batch in 1..1000 (the service's max_items_per_request) and counts >= 1")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads: expected a positive integer, found {args.threads}")
    return args


def goal(row: str, value: dict[str, Any], limit: float) -> str:
    return "-" if not row.startswith("http") else ("met" if value["p95_ms"] < limit else "not met")


def latency_rows(results: dict[str, Any], limit: float) -> list[list[str]]:
    base = results["numpy"]["p50_ms"]
    return [
        [
            row,
            str(v["concurrency"]),
            str(v["requests"]),
            fmt(v["p50_ms"], 2),
            fmt(v["p95_ms"], 2),
            fmt(v["mean_ms"], 2),
            fmt(v.get("requests_per_second")),
            f"{v['p50_ms'] / base:,.1f}x",
            goal(row, v, limit),
        ]
        for row, v in results.items()
    ]


def embed_rows(p: dict[str, Any]) -> list[list[str]]:
    api, direct, fill = p["embedding"], p["in_process"]["direct_embedding"], p["catalog"]["synthetic"]
    rows = [
        [
            f"POST /v1/items, {api['batch']} per request",
            api["items"],
            api["seconds"],
            api["items_per_second"],
            "real MiniLM; embed, store rows, rewrite the index file",
        ],
        [
            "model.item_vectors in process",
            direct["items"],
            direct["seconds"],
            direct["items_per_second"],
            "real MiniLM; no HTTP, no database",
        ],
    ]
    if fill is not None:
        rows.append(
            [
                "ItemCatalog.upsert, synthetic vectors",
                fill["items"],
                fill["seconds"],
                fill["items"] / fill["seconds"],
                "NOT embedded: " + fill["vectors"],
            ]
        )
    return [[r[0], f"{r[1]:,}", fmt(r[2], 2), fmt(r[3]), r[4]] for r in rows]


def goal_line(p: dict[str, Any]) -> str:
    parts = []
    for name, limit in (("score", GOAL_SCORE_MS), ("recommend", GOAL_RECOMMEND_MS)):
        found = ", ".join(
            f"concurrency {v['concurrency']} {v['p95_ms']:.1f} ms {goal(row, v, limit)}"
            for row, v in p["latency"][name].items()
            if row.startswith("http")
        )
        parts.append(f"`/v1/{name}` p95 < {limit:.0f} ms: {found}")
    items = p["catalog"]["items"]
    caveat = (
        "" if items >= FULL["items"] else f" (catalog of {items:,} items, not {FULL['items']:,}: a smoke run)"
    )
    return f"Goals on {p['machine']['cpu_count']} CPU(s){caveat}: " + "; ".join(parts) + "."


def notes(p: dict[str, Any]) -> str:
    c, http, serve = p["catalog"], p["http"], p["servers"]["serve"]
    upserts = ", ".join(f"{s:.2f}" for s in p["upsert_full_catalog"]["seconds"])
    return (
        f"Catalog: {c['items']:,} items, of which {c['embedded_for_real']:,} embedded for real with MiniLM "
        f"through the API and {c['items'] - c['embedded_for_real']:,} synthetic (rows stored, vectors "
        f"perturbed copies of the real ones, put in by `ItemCatalog.upsert`; the API takes no precomputed "
        f"vectors). faiss structure: {p['in_process']['hnsw']}. Events: {p['events']['events']:,} clicks "
        f"(background users plus {p['settings']['bench_users']} timed users with {HISTORY}-item histories). "
        f"Server start on the full catalog: {serve['startup_seconds']:.1f} s; first `/v1/recommend` (builds "
        f"the faiss structure): {http['first_request_ms']['recommend']:,.0f} ms; first `/v1/score`: "
        f"{http['first_request_ms']['score']:,.0f} ms. `POST /v1/items` of "
        f"{p['upsert_full_catalog']['items_per_request']} new items into the full catalog: {upserts} s. "
        f"Threads: server torch {serve['torch_threads']}, "
        + ", ".join(f"{k}={serve[k]}" for k in THREAD_ENV)
        + f"; server max_workers {serve['max_workers']}.\n\nnumpy: brute force in this process (mean "
        "profile, dot products, sort; recommend over every item). in-process: the service's `Recommender` "
        "without HTTP. http-cN: real requests on loopback, N in flight; latency until the whole body has "
        "arrived (after warm-up requests). p50 vs numpy: the row's p50 over the numpy p50.\n"
    )


def markdown(p: dict[str, Any]) -> str:
    s = p["settings"]
    settings = (
        f"{s['items']:,} items ({s['embed_items']:,} embedded for real), {s['requests']} requests per "
        f"endpoint and concurrency, {CANDIDATES} candidates per score request, k={K}; device "
        f"{s['device']}, precision {s['precision']}, --threads {s['threads']}"
    )
    return "".join(
        [
            markdown_header(
                "Recommender: catalog embedding and /v1/score, /v1/recommend latency", p, settings
            ),
            f"{goal_line(p)}\n\n## Catalog embedding\n\n",
            markdown_table(EMBED_HEADERS, embed_rows(p)),
            f"\n## `POST /v1/score`, {CANDIDATES} candidates, user with a {HISTORY}-item history\n\n",
            markdown_table(LATENCY_HEADERS, latency_rows(p["latency"]["score"], GOAL_SCORE_MS)),
            f"\n## `GET /v1/recommend?k={K}&exclude_seen=true` over {s['items']:,} items\n\n",
            markdown_table(LATENCY_HEADERS, latency_rows(p["latency"]["recommend"], GOAL_RECOMMEND_MS)),
            "\n" + notes(p),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_fd is not None:
        return run_server(args)
    try:
        resolve_model("minilm")
    except CoreError as exc:
        print(f"{NAME}: skipped: no base model ({exc.message})")
        return 0
    quiet_transformers()
    warn_if_busy()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    machine = machine_info() | {"threads": thread_facts()}
    items = products(args.items + FULL_CATALOG_UPSERTS * 50, args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-recommender-") as tmp:
        results = run_phases(args, Path(tmp), items)
    keys = ("items", "embed_items", "batch", "requests", "users", "bench_users", "direct_items", "threads")
    settings = {k: getattr(args, k) for k in (*keys, "device", "precision", "seed", "quick")}
    payload: dict[str, Any] = {"benchmark": NAME, "created_at": utc_now(), "command": command_line()}
    payload |= {"machine": machine, "settings": settings, **results}
    payload["goals_ms_p95"] = {"score": GOAL_SCORE_MS, "recommend": GOAL_RECOMMEND_MS}
    payload["latency"] = {n: results["in_process"][n] | results["http"][n] for n in ("score", "recommend")}
    print_table("Catalog embedding", EMBED_HEADERS, embed_rows(payload))
    for name, limit in (("score", GOAL_SCORE_MS), ("recommend", GOAL_RECOMMEND_MS)):
        print_table(f"/v1/{name}", LATENCY_HEADERS, latency_rows(payload["latency"][name], limit))
    print(goal_line(payload))
    json_path, md_path = write_results(args.name, payload, markdown(payload), args.out)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
