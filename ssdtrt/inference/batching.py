"""Batching, once for every caller: chunk a list, pad a batch to a model's static batch, drop the padding.

    for part in chunks(len(images), 8): ...                        # slices of at most 8
    outputs = run_in_batches(batch, static_batch=4, run=infer)     # 5 rows → two calls of 4 (the last padded)

A static-batch model (an engine built for batch 4) only accepts that many rows: a shorter batch is zero-padded and
the padding rows are dropped from every output; a longer one runs in chunks. Outputs are numpy arrays or torch
tensors (a runner handing back device tensors); both are sliced and concatenated alike. Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

__all__ = ["PaddedRequests", "chunks", "concat_outputs", "pad_to", "run_in_batches", "static_batch_of", "unpad"]


def static_batch_of(shape: Sequence[int | str]) -> int | None:
    """The fixed batch of an input shape (its first dimension when that is a positive int), else None (dynamic)."""
    first = shape[0] if len(shape) else None
    return first if isinstance(first, int) and not isinstance(first, bool) and first > 0 else None


def chunks(total: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most `size` items covering range(total)."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def pad_to(batch: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """(`batch` with zero rows appended up to `size` rows, its real row count). A batch of `size` rows or more is
    returned as is."""
    real = int(batch.shape[0])
    if real >= size:
        return batch, real
    pad = np.zeros((size - real, *batch.shape[1:]), dtype=batch.dtype)
    return np.concatenate([batch, pad]), real


def unpad(outputs: Mapping[str, Any], real: int) -> dict[str, Any]:
    """Every output's first `real` rows (the padding rows dropped)."""
    return {name: value[:real] for name, value in outputs.items()}


def concat_outputs(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Outputs of consecutive chunks joined along the batch dimension (numpy, or torch when any part is a tensor)."""
    if not parts:
        raise ValueError("no outputs to concatenate")
    out: dict[str, Any] = {}
    for name in parts[0]:
        values = [p[name] for p in parts]
        if all(isinstance(v, np.ndarray) for v in values):
            out[name] = np.concatenate(values)
        else:
            import torch

            out[name] = torch.cat([torch.as_tensor(v) for v in values])
    return out


def run_in_batches(
    batch: np.ndarray, static_batch: int | None, run: Callable[[np.ndarray], Mapping[str, Any]]
) -> dict[str, Any]:
    """`run(rows)` over `batch` as the model accepts it: one call for a dynamic batch (None) or an exact fit, else
    chunks of `static_batch` rows, the last one zero-padded, with the padding rows dropped from the outputs."""
    n = int(batch.shape[0])
    if static_batch is None or n == static_batch:
        return dict(run(batch))
    parts = []
    for part in chunks(n, static_batch):
        padded, real = pad_to(batch[part], static_batch)
        parts.append(unpad(run(padded), real))
    return concat_outputs(parts)


class PaddedRequests:
    """Asynchronous requests of one batch (chunks padded to a static batch): `result()` joins them, unpadded.

    Built by `submit`: `PaddedRequests.start(batch, static_batch, start)` where `start(rows)` returns a Future of
    one request's outputs (e.g. `Runner.infer_async`)."""

    def __init__(self, futures: list[tuple[Future[Any], int]]) -> None:
        self._futures = futures

    @classmethod
    def start(
        cls, batch: np.ndarray, static_batch: int | None, start: Callable[[np.ndarray], Future[Any]]
    ) -> PaddedRequests:
        n = int(batch.shape[0])
        if static_batch is None or n == static_batch:
            return cls([(start(batch), n)])
        futures = []
        for part in chunks(n, static_batch):
            padded, real = pad_to(batch[part], static_batch)
            futures.append((start(padded), real))
        return cls(futures)

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """The outputs of every row of the batch, in order (waits; re-raises a request's exception)."""
        parts = [unpad(future.result(timeout), real) for future, real in self._futures]
        return parts[0] if len(parts) == 1 else concat_outputs(parts)

    def done(self) -> bool:
        return all(future.done() for future, _ in self._futures)
