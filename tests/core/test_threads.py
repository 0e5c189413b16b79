"""`background_iter` (behind `prefetch` and the stream reader): order kept, the producer's exception reaches the
consumer, closing early stops the producer thread, and the producer is never more than depth + 1 items ahead."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest

from ssdtrt.core.threads import background_iter


def _alive(name: str) -> bool:
    return any(t.name == name and t.is_alive() for t in threading.enumerate())


def _gone_within(name: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(name):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_order_kept_on_a_named_thread() -> None:
    seen = []
    for value in background_iter(range(1000), 3, "test-bg-order"):
        if value == 0:
            assert _alive("test-bg-order")
        seen.append(value)
    assert seen == list(range(1000))
    assert _gone_within("test-bg-order", 1.0)


def test_producer_exception_reaches_consumer_after_its_items() -> None:
    def produce() -> Iterator[int]:
        yield from range(3)
        raise RuntimeError("producer broke")

    got = []
    with pytest.raises(RuntimeError, match="producer broke"):
        for value in background_iter(produce(), 2, "test-bg-error"):
            got.append(value)
    assert got == [0, 1, 2]
    assert _gone_within("test-bg-error", 1.0)


def test_early_close_stops_the_producer() -> None:
    stream = background_iter(itertools.count(), 2, "test-bg-close")  # endless: only the close can stop it
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    assert _alive("test-bg-close")
    stream.close()
    assert _gone_within("test-bg-close", 1.0)


def test_producer_stays_within_depth() -> None:
    depth = 4
    produced = 0

    def produce() -> Iterator[int]:
        nonlocal produced
        for i in range(40):
            produced += 1
            yield i

    ahead = []
    for consumed, _ in enumerate(background_iter(produce(), depth, "test-bg-depth"), start=1):
        time.sleep(0.02)  # a slow consumer: the producer runs until the queue is full
        ahead.append(produced - consumed)
    assert max(ahead) <= depth + 1  # `depth` queued + the one it holds while waiting for room
    assert max(ahead) >= depth  # it did read ahead


def test_depth_below_one_rejected() -> None:
    with pytest.raises(ValueError, match="depth"):
        next(background_iter([1], 0, "test-bg-zero"))
