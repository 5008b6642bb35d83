"""Retention: erase the sessions inactive for longer than ``CS_SESSION_RETENTION_DAYS`` (unset: keep all).

Inactive since: a session's ``updated_at``, its last activity (a message, a hand-off, a resolution). A session
waiting for an agent is never erased however long it waits: an agent still needs it; once resolved it ages
like any other. Its turns and their feedback go with it, and analytics' figures of the past drop with them.

`erase_expired` is the work, a plain function; `retention_loop` only runs it in a worker thread at start and
then every `INTERVAL_S`, in a task the app's lifespan owns (`running_retention`). Deletions go in batches of
`BATCH_SIZE` sessions, one short transaction each, so a first pass over a long history never holds the
database for long, and a shutdown waits for the batch in progress only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timedelta
from functools import partial

import anyio
from prometheus_client import Counter

from customer_service.conversations import Conversations
from textcore.sql import utcnow

BATCH_SIZE = 500
INTERVAL_S = 3600.0

logger = logging.getLogger(__name__)


def cutoff(days: int, now: datetime | None = None) -> datetime:
    """Sessions last active before this time are due: `days` before `now` (default: the clock)."""
    return (now or utcnow()) - timedelta(days=days)


def erase_expired(
    conversations: Conversations,
    days: int,
    *,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    erased: Counter | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Erase every session inactive for more than `days` days and not waiting for an agent, `batch_size`
    sessions per transaction, then empty SQLite's write-ahead log; returns how many were erased.

    Args:
        erased: Counted on as each batch commits.
        stop: Once set, no further batch is started.
    """
    before, total = cutoff(days, now), 0
    while stop is None or not stop.is_set():
        batch = conversations.erase_inactive(before, batch_size)
        total += batch
        if erased is not None:
            erased.inc(batch)
        if batch < batch_size:
            break
    if total:
        conversations.db.checkpoint()
    return total


async def retention_loop(
    conversations: Conversations,
    days: int,
    erased: Counter,
    *,
    interval_s: float = INTERVAL_S,
    batch_size: int = BATCH_SIZE,
    after_erasure: Callable[[], None] | None = None,
) -> None:
    """`erase_expired` now and every `interval_s` seconds until cancelled; a cancelled pass ends after its
    batch in progress. A failing pass (the database unreachable) is logged, and tried again next time.
    `after_erasure` is called after a pass that erased sessions (to forget what memory holds of them)."""
    stop = threading.Event()
    work = partial(erase_expired, conversations, days, batch_size=batch_size, erased=erased, stop=stop)
    while True:
        try:
            total = await _in_thread(work, stop)
        except Exception:
            logger.exception("retention: the pass failed; the next one is in %.0f s", interval_s)
        else:
            if total:
                logger.info("retention: %d sessions inactive for over %d days erased", total, days)
                if after_erasure is not None:
                    after_erasure()
        await anyio.sleep(interval_s)


@asynccontextmanager
async def running_retention(
    conversations: Conversations,
    days: int | None,
    erased: Counter,
    *,
    interval_s: float = INTERVAL_S,
    after_erasure: Callable[[], None] | None = None,
) -> AsyncIterator[None]:
    """`retention_loop` while the context is open (nothing when `days` is None); cancelled on leaving it."""
    if days is None:
        yield
        return
    loop = retention_loop(conversations, days, erased, interval_s=interval_s, after_erasure=after_erasure)
    task = asyncio.create_task(loop)
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def _in_thread(work: Callable[[], int], stop: threading.Event) -> int:
    """`work()` in a worker thread. Cancelled, it sets `stop` and waits for the thread before passing the
    cancellation on, so nothing writes to the database once the lifespan closes it."""
    job = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        stop.set()
        try:
            await job
        except Exception:
            logger.exception("retention: the pass failed as the service stopped")
        raise
