"""Chat benchmark: `/v1/chat` latency and throughput on loopback with 16 concurrent clients, one run.

The service runs under uvicorn in a subprocess with its defaults (SQLite, faiss, the bundled MiniLM for
retrieval) over the bank FAQs (`../shared/data/bank_faqs/faqs.csv`, 1,487 entries; the project's own demo
FAQs when that file is absent), optionally with an intent model (`--intent-model`, e.g. one trained on
BANKING77) and a re-ranker (`--reranker`). Clients send FAQ questions (and one out-of-scope message in ten),
three messages per session.

Rows, each on a fresh server:
- `open-loop`: requests are scheduled at `--rate` per second (goal: 20) and sent by 16 clients; a request's
  latency runs from its scheduled time, so queueing behind a saturated service counts (no coordinated
  omission). Goal: p95 under 100 ms without generation.
- `closed-loop`: 16 clients send back to back; throughput is what the service can take.
- `local generator`: grounded generation with SmolLM2 on the same cores, closed loop, fewer requests.
Baseline in the same run: the same turns through `Bot.chat` in process, one at a time (no HTTP, no
concurrency): the compute cost of a turn.

    python bench/chat.py --intent-model runs/banking77 [--reranker DIR]
    python bench/chat.py --quick --out /tmp/bench-smoke

Results: bench/results/chat.json and bench/results/chat.md.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]  # `common`

import argparse  # noqa: E402
import asyncio  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
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
    utc_now,
    warn_if_busy,
    write_results,
)

BANK_FAQS = REPO_ROOT / ".." / "shared" / "data" / "bank_faqs" / "faqs.csv"
DEMO_FAQS = REPO_ROOT / "examples" / "customer_service" / "faqs.csv"
CLIENTS = 16
OUT_OF_SCOPE = (
    "who won the football match last night", "what is the capital of australia",
    "recommend a good pizza place", "how tall is mount everest", "tell me a joke about cats",
    "what's the weather like tomorrow",
)  # fmt: skip


def messages(kb: Path, n: int, seed: int) -> list[str]:
    """`n` messages: FAQ questions, one in ten out of scope."""
    from textcore import read_table  # noqa: PLC0415

    questions = [row["question"] for row in read_table(kb)]
    rng = random.Random(seed)
    return [rng.choice(OUT_OF_SCOPE) if i % 10 == 9 else rng.choice(questions) for i in range(n)]


def server_env(args: argparse.Namespace, folder: Path, generator: str) -> dict[str, str]:
    env = {
        **os.environ,
        "CS_DATABASE_URL": f"sqlite:///{folder}/cs-{generator}.db",
        "CS_INDEX_DIR": str(folder / "index"),
        "CS_KNOWLEDGE_FILE": str(args.kb),
        "CS_GENERATOR__KIND": generator,
        "CS_GENERATOR__TIMEOUT_S": "30",
        "CS_GENERATOR__MAX_TOKENS": "60",
        "CS_MAX_QUEUE": "64",
    }
    if args.intent_model:
        env["CS_INTENT_MODEL_PATH"] = str(args.intent_model)
    if args.reranker:
        env["CS_RERANKER_PATH"] = str(args.reranker)
    return env


@contextmanager
def server(args: argparse.Namespace, folder: Path, generator: str) -> Iterator[tuple[str, float]]:
    """The app under uvicorn in a subprocess on a free loopback port; yields its URL and start-up seconds."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = (folder / f"server-{generator}.log").open("w")
    command = [sys.executable, "-m", "uvicorn", "--factory", "customer_service.app:create_app",
               "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
    process = subprocess.Popen(command, env=server_env(args, folder, generator), stdout=log, stderr=log)
    started = time.perf_counter()
    try:
        while not _ready(url):
            if process.poll() is not None or time.perf_counter() - started > 600:
                raise RuntimeError(
                    f"server did not start: {(folder / f'server-{generator}.log').read_text()[-2000:]}"
                )
            time.sleep(0.5)
        yield url, time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


async def drive(url: str, texts: list[str], *, rate: float | None) -> dict[str, Any]:
    """Send `texts` with 16 clients: paced at `rate` per second (open loop), or back to back when None."""
    latencies: list[float] = []
    actions: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    errors: list[str] = []
    pending = iter(enumerate(texts))
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=600, limits=limits) as client:
        began = time.perf_counter()

        async def worker() -> None:
            session: str | None = None
            for i, text in pending:
                due = began + i / rate if rate else time.perf_counter()
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                body = {"message": text, **({"session_id": session} if session and i % 3 else {})}
                response = await client.post("/v1/chat", json=body)
                latencies.append(time.perf_counter() - due)
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")
                    continue
                reply = response.json()
                session = reply["session_id"]
                actions[reply["action"]] += 1
                modes[reply["mode"]] += 1

        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
        wall = time.perf_counter() - began
    return {**stats(latencies), "requests_per_second": len(texts) / wall, "actions": dict(actions),
            "modes": dict(modes), "errors": errors[:5], "n_errors": len(errors)}  # fmt: skip


def stats(seconds: list[float]) -> dict[str, Any]:
    p50, p95 = np.percentile(np.asarray(seconds) * 1000, [50, 95])
    return {"requests": len(seconds), "p50_ms": float(p50), "p95_ms": float(p95),
            "mean_ms": 1000 * statistics.fmean(seconds)}  # fmt: skip


async def in_process(args: argparse.Namespace, folder: Path, texts: list[str]) -> dict[str, Any]:
    """The baseline: `Bot.chat` one turn at a time, no HTTP."""
    from customer_service.service import open_service  # noqa: PLC0415
    from customer_service.settings import CustomerServiceSettings  # noqa: PLC0415
    from textcore.web import CapacityLimiter  # noqa: PLC0415

    env = server_env(args, folder, "off")
    settings = CustomerServiceSettings(
        database_url=env["CS_DATABASE_URL"].replace("cs-off", "cs-inprocess"), index_dir=folder / "index",
        knowledge_file=args.kb, intent_model_path=args.intent_model, reranker_path=args.reranker,
    )  # fmt: skip
    async with open_service(settings, CapacityLimiter(1, 64)) as service:
        for text in texts[:5]:  # warm-up
            await service.bot.chat(None, text)
        seconds = []
        for text in texts:
            began = time.perf_counter()
            await service.bot.chat(None, text)
            seconds.append(time.perf_counter() - began)
    return {**stats(seconds), "requests_per_second": len(seconds) / sum(seconds)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    texts = messages(args.kb, args.requests, args.seed)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-chat-") as tmp:
        folder = Path(tmp)
        with server(args, folder, "off") as (url, startup):
            results["startup_seconds"] = startup
            asyncio.run(drive(url, texts[:32], rate=None))  # warm-up
            print("open loop", flush=True)
            results["open-loop"] = asyncio.run(drive(url, texts, rate=args.rate))
            print("closed loop", flush=True)
            results["closed-loop"] = asyncio.run(drive(url, texts, rate=None))
        print("in process", flush=True)
        results["in-process"] = asyncio.run(in_process(args, folder, texts[: args.baseline_requests]))
        if args.generator_requests:
            with server(args, folder, "local") as (url, _):
                asyncio.run(drive(url, texts[:2], rate=None))  # warm-up
                print("local generator", flush=True)
                results["local-generator"] = asyncio.run(
                    drive(url, texts[: args.generator_requests], rate=None)
                )
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kb", type=Path, default=None, help="FAQ file (default: bank_faqs, else the demo)")
    parser.add_argument("--intent-model", type=Path, default=None)
    parser.add_argument("--reranker", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--rate", type=float, default=20.0, help="open-loop requests per second")
    parser.add_argument("--baseline-requests", type=int, default=200)
    parser.add_argument("--generator-requests", type=int, default=32, help="0 skips the generator row")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few requests")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    args.kb = args.kb or (BANK_FAQS if BANK_FAQS.is_file() else DEMO_FAQS)
    if args.quick:
        args.requests, args.baseline_requests, args.generator_requests = 60, 20, 4
    return args


def rows(r: dict[str, Any], rate: float) -> list[list[str]]:
    out = []
    for name, label in (("open-loop", f"open loop, {rate:g}/s scheduled"), ("closed-loop", "closed loop"),
                        ("in-process", "baseline: Bot.chat in process, 1 at a time"),
                        ("local-generator", "local generator (SmolLM2), closed loop")):  # fmt: skip
        if name in r:
            x = r[name]
            actions = ", ".join(f"{k} {v}" for k, v in sorted(x.get("actions", {}).items()))
            modes = ", ".join(f"{k} {v}" for k, v in sorted(x.get("modes", {}).items()))
            figures = [fmt(x["requests_per_second"]), fmt(x["p50_ms"]), fmt(x["p95_ms"])]
            out.append(
                [label, str(x["requests"]), *figures, str(x.get("n_errors", 0)), actions or "-", modes or "-"]
            )
    return out


HEADERS = ["row", "requests", "req/s", "p50 ms", "p95 ms", "errors", "actions", "answer modes"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warn_if_busy()
    machine = machine_info()
    results = run(args)
    open_loop = results["open-loop"]
    met = open_loop["p95_ms"] < 100 and open_loop["requests_per_second"] >= 0.95 * args.rate
    payload = {
        "command": command_line(), "created_at": utc_now(), "machine": machine,
        "settings": {k: str(v) for k, v in vars(args).items()}, "results": results,
        "goal": {"p95_ms_below": 100, "rate": args.rate, "met": met},
    }  # fmt: skip
    settings = (
        f"knowledge base {args.kb.name} ({'bank FAQs' if args.kb == BANK_FAQS else 'demo FAQs'}); "
        f"intent model {args.intent_model or 'none'}; re-ranker {args.reranker or 'none'}; "
        f"{CLIENTS} clients; "
        f"server start-up {results['startup_seconds']:.1f} s (ingest and index included)"
    )
    goal = (
        f"Goal: p95 < 100 ms at {args.rate:g} requests/s without generation: {'met' if met else 'not met'}."
    )
    markdown = markdown_header("Chat: `/v1/chat` on loopback", payload, settings) + goal + "\n\n"
    markdown += markdown_table(HEADERS, rows(results, args.rate))
    print_table("chat", HEADERS, rows(results, args.rate))
    print(goal)
    for path in write_results("chat", payload, markdown, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
