"""Run an iterable on a background thread, a bounded distance ahead of its consumer.

Shared by `ssdtrt.io.images.prefetch` and `ssdtrt.stream.reader.read_ordered`: decoding releases the GIL, so reading
the next inputs overlaps the consumer's inference, while the bounded queue keeps memory fixed whatever the input length.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Literal, TypeVar, Union, cast

T = TypeVar("T")

_Message = Union[tuple[Literal["item"], object], tuple[Literal["end"], None], tuple[Literal["error"], BaseException]]


def background_iter(produce: Iterable[T], depth: int, name: str, *, join_timeout: float = 5.0) -> Iterator[T]:
    """Yield `produce`'s items in order while a daemon thread named `name` iterates it at most `depth` items ahead.

    The producer holds at most one item beyond the queue, so it is never more than `depth + 1` items ahead of the
    item the consumer holds. An exception raised by `produce` is re-raised here (after the items before it); leaving
    the loop early (closing this generator) stops the producer at its next item and joins it. The thread starts at the
    first `next()`.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    buf: queue.Queue[_Message] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: _Message) -> bool:
        """Queue a message unless the consumer has gone (checked every 0.1 s while the queue is full); False if gone."""
        while not stop.is_set():
            try:
                buf.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in produce:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer thread
            put(("error", err))

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            kind, value = buf.get()
            if kind == "end":
                return
            if kind == "error":
                raise cast(BaseException, value)
            yield cast(T, value)
    finally:
        stop.set()
        thread.join(timeout=join_timeout)
