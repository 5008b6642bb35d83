"""torch's intra-op threads around a request's encoder calls (``REC_TORCH_THREADS``) and catalog embedding
(``REC_EMBED_THREADS``); `recommender.serving` says why a request's calls are best left single-threaded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run this thread's torch calls on `threads` threads meanwhile (None: leave them as they are).

    torch's OpenMP thread count belongs to each OS thread, fixed when the thread first runs torch, so a
    limit set once at start-up would miss worker threads that already ran it: it is set around each call.
    """
    previous = torch.get_num_threads()
    if threads is None or threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
