"""`ssdtrt.inference.batching`: chunking, padding to a static batch and dropping the padding — the one helper that
`Detector`, the stream and `compare` feed static-batch models with. Checked against a per-row reference function."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssdtrt.inference.batching import (
    PaddedRequests,
    chunks,
    concat_outputs,
    pad_to,
    run_in_batches,
    static_batch_of,
    unpad,
)


def _rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, 2, 2)).astype(np.float32)


class StaticModel:
    """A model that takes exactly `static` rows (None: any number) and answers per row: sum and row max."""

    def __init__(self, static: int | None) -> None:
        self.static = static
        self.calls: list[int] = []

    def __call__(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        if self.static is not None and rows.shape[0] != self.static:
            raise ValueError(f"static batch {self.static}, got {rows.shape[0]} rows")
        self.calls.append(rows.shape[0])
        flat = rows.reshape(rows.shape[0], -1)
        return {"sum": flat.sum(axis=1), "max": flat.max(axis=1, keepdims=True)}


def reference(rows: np.ndarray) -> dict[str, np.ndarray]:
    flat = rows.reshape(rows.shape[0], -1)
    return {"sum": flat.sum(axis=1), "max": flat.max(axis=1, keepdims=True)}


def test_chunks_cover_the_range_in_order() -> None:
    assert [(s.start, s.stop) for s in chunks(7, 3)] == [(0, 3), (3, 6), (6, 7)]
    assert list(chunks(0, 4)) == []
    assert [(s.start, s.stop) for s in chunks(4, 4)] == [(0, 4)]
    with pytest.raises(ValueError, match="chunk size"):
        list(chunks(3, 0))


def test_pad_to_appends_zero_rows_and_keeps_longer_batches() -> None:
    x = _rows(3)
    padded, real = pad_to(x, 5)
    assert real == 3 and padded.shape == (5, 3, 2, 2) and padded.dtype == np.float32
    assert np.array_equal(padded[:3], x) and not padded[3:].any()
    same, real = pad_to(x, 2)
    assert same is x and real == 3
    assert {k: v.shape for k, v in unpad({"a": padded, "b": padded[:, 0]}, 3).items()} == {"a": (3, 3, 2, 2), "b": (3, 2, 2)}


def test_static_batch_of_reads_the_first_dimension() -> None:
    assert static_batch_of((4, 3, 300, 300)) == 4
    assert static_batch_of(("batch", 3, 300, 300)) is None
    assert static_batch_of((-1, 3, 300, 300)) is None
    assert static_batch_of(()) is None


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 23), static=st.one_of(st.none(), st.integers(1, 7)))
def test_run_in_batches_equals_one_unpadded_pass(n: int, static: int | None) -> None:
    x = _rows(n, seed=n)
    model = StaticModel(static)
    out = run_in_batches(x, static, model)
    ref = reference(x)
    assert set(out) == set(ref)
    for name in ref:
        assert np.array_equal(out[name], ref[name])  # the padding rows are gone, the real rows untouched
    expected_calls = 1 if static is None else -(-n // static)
    assert len(model.calls) == expected_calls


def test_padded_requests_join_async_chunks_in_order() -> None:
    x = _rows(10, seed=3)
    model = StaticModel(4)
    with ThreadPoolExecutor(2) as pool:
        pending = PaddedRequests.start(x, 4, lambda rows: pool.submit(model, rows))
        out = pending.result(timeout=30)
        assert pending.done()
    assert model.calls == [4, 4, 4]
    assert all(np.array_equal(out[k], v) for k, v in reference(x).items())


def test_padded_requests_reraise_the_request_error() -> None:
    with ThreadPoolExecutor(1) as pool:
        pending = PaddedRequests.start(_rows(3), None, lambda rows: pool.submit(StaticModel(2), rows))
        with pytest.raises(ValueError, match="static batch 2"):
            pending.result(timeout=30)


def test_concat_outputs_joins_torch_tensors_too() -> None:
    torch = pytest.importorskip("torch")
    parts = [{"a": np.ones((2, 3), np.float32)}, {"a": torch.zeros(1, 3)}]
    out = concat_outputs(parts)
    assert isinstance(out["a"], torch.Tensor) and tuple(out["a"].shape) == (3, 3)
    with pytest.raises(ValueError, match="no outputs"):
        concat_outputs([])
