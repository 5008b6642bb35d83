"""Run blocking calls in worker threads under a bound, refusing work instead of queueing forever."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread

from textcore.errors import Overloaded

P = ParamSpec("P")
T = TypeVar("T")


class CapacityLimiter:
    """Bound the number of blocking calls (model inference, file parsing) that run or wait at once.

    At most ``max_workers`` calls run in threads at a time and at most ``max_queue`` more wait for a slot;
    any call beyond that raises `Overloaded` (429) at once, so a burst cannot pile up unbounded latency.

    Args:
        max_workers: Number of calls allowed to run concurrently in threads (at least 1).
        max_queue: Number of further calls allowed to wait for a free worker (at least 0).

    Raises:
        ValueError: If a bound is out of range.
    """

    def __init__(self, max_workers: int, max_queue: int = 0) -> None:
        if max_workers < 1:
            raise ValueError(f"expected max_workers >= 1, found {max_workers}")
        if max_queue < 0:
            raise ValueError(f"expected max_queue >= 0, found {max_queue}")
        self._max_workers = max_workers
        self._max_queue = max_queue
        self._limiter = anyio.CapacityLimiter(max_workers)
        # Only touched from the event loop thread, so a plain int needs no lock.
        self._in_flight = 0

    @property
    def max_workers(self) -> int:
        """Number of calls that may run concurrently."""
        return self._max_workers

    @property
    def max_queue(self) -> int:
        """Number of calls that may wait for a worker before new calls are refused."""
        return self._max_queue

    @property
    def in_flight(self) -> int:
        """Number of calls currently running or waiting."""
        return self._in_flight

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` in a worker thread and return its result.

        Args:
            fn: A blocking callable.
            *args: Positional arguments for ``fn``.
            **kwargs: Keyword arguments for ``fn``.

        Returns:
            Whatever ``fn`` returns.

        Raises:
            Overloaded: If ``max_workers + max_queue`` calls are already in flight.
        """
        limit = self._max_workers + self._max_queue
        if self._in_flight >= limit:
            raise Overloaded(
                f"expected at most {limit} calls in flight, found {self._in_flight}; retry later"
            )
        return await self.finish(fn, *args, **kwargs)

    async def finish(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` in a worker thread, waiting for a free worker however many calls are
        in flight: the last step of work `run` already admitted (storing what a request computed), which
        refusing would waste, or leave half done. It counts in `in_flight`, so new calls see the load.

        Args:
            fn: A blocking callable.
            *args: Positional arguments for ``fn``.
            **kwargs: Keyword arguments for ``fn``.

        Returns:
            Whatever ``fn`` returns.
        """
        self._in_flight += 1
        try:
            return await anyio.to_thread.run_sync(
                functools.partial(fn, *args, **kwargs), limiter=self._limiter
            )
        finally:
            self._in_flight -= 1
