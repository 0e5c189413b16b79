"""`max_over_classes` (the row pre-filter's class max, swept column by column for speed) equals numpy's max."""

from __future__ import annotations

import numpy as np
import pytest

from ssdtrt.postprocess.host_numpy import max_over_classes


@pytest.mark.parametrize("shape", [(1, 8732, 81), (8, 2000, 7), (3, 5, 2), (0, 10, 4), (700, 300, 21)])
@pytest.mark.parametrize("first", [0, 1])
def test_equals_numpy_max(shape: tuple[int, int, int], first: int) -> None:
    scores = np.random.default_rng(sum(shape)).normal(size=shape).astype(np.float32)
    if scores.size:
        scores[0, 0, -1] = np.nan  # NaN propagates as in ndarray.max
        scores[-1, -1, :] = -np.inf
    got = max_over_classes(scores, first=first)
    np.testing.assert_array_equal(got, scores[..., first:].max(axis=-1))
    assert got.dtype == scores.dtype
