"""Texts from standard input, one per line, in batches of what has arrived: `textcore predict` without
`--data`.

A pipe that stays open (a producer writing one text now and then) gets each text answered as it comes,
rather than after the pipe closes; a file or a fast producer fills whole batches. A reader thread hands the
lines over through a bounded queue, so at most a few batches wait in memory however long the input.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Iterator
from typing import BinaryIO

from textcore.errors import InvalidInput

_END = object()  # the reader reached the end of the input


def stdin_lines(stream: BinaryIO | None = None) -> Iterator[str]:
    """The non-blank lines of `stream` (default: standard input's bytes), decoded as UTF-8 (a BOM on the first
    line dropped), without their line ends.

    Raises:
        InvalidInput: A line that is not UTF-8, named by its number.
    """
    for number, raw in enumerate(sys.stdin.buffer if stream is None else stream, start=1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"standard input, line {number}: expected UTF-8 text; byte {exc.start} is not valid UTF-8"
            ) from exc
        text = line.rstrip("\r\n")
        if text.strip():
            yield text


def line_batches(lines: Iterator[str], size: int) -> Iterator[list[str]]:
    """Batches of up to `size` of `lines`: each holds the next line, waiting for it, and the lines that have
    already arrived behind it, without waiting for more.

    Raises:
        InvalidInput: `size` is below 1.
        Exception: Whatever reading `lines` raised, once the lines read before it have been handed out.
    """
    if size < 1:
        raise InvalidInput(f"expected batch_size >= 1; found {size}")
    arrived: queue.Queue[object] = queue.Queue(maxsize=4 * size)
    threading.Thread(target=_read_into, args=(lines, arrived), name="stdin-lines", daemon=True).start()
    pending = arrived.get()
    while pending is not _END:
        batch: list[str] = []
        item: object = pending
        while isinstance(item, str):
            batch.append(item)
            try:
                item = None if len(batch) >= size else arrived.get_nowait()
            except queue.Empty:
                item = None  # nothing more has arrived: answer what has
        if batch:
            yield batch
        if isinstance(item, BaseException):
            raise item
        pending = arrived.get() if item is None else item


def _read_into(lines: Iterator[str], arrived: queue.Queue[object]) -> None:
    try:
        for line in lines:
            arrived.put(line)
    except BaseException as exc:  # handed to the consumer, which raises it in its own thread
        arrived.put(exc)
    else:
        arrived.put(_END)
