"""The torch postprocess's row pre-filter (sparse path) gives exactly the dense path's detections.

Same labels, order, boxes and scores (bit for bit) on heads with many / few candidates, thresholds at edge values
(equal to a probability present in the head, one ulp around it, tiny, near 1), batch sizes 1-3, cross-row ties
(duplicated rows, quantized logits) and both `scores_are_probs` / `boxes_are_decoded` inputs.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("torchvision")

from ssdtrt.postprocess import host_torch as pp  # noqa: E402
from ssdtrt.postprocess.host_torch import postprocess  # noqa: E402

PROFILE = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow])


def dense(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201
    """The postprocess with the pre-filter switched off (every row softmaxed and decoded)."""
    with mock.patch.object(pp, "_rows_that_can_pass", lambda *a, **k: None):
        return postprocess(*args, **kwargs)


def assert_identical(a, b) -> None:  # noqa: ANN001
    assert len(a) == len(b)
    for da, db in zip(a, b):
        assert da.labels.dtype == db.labels.dtype and da.scores.dtype == db.scores.dtype
        assert torch.equal(da.labels, db.labels)
        assert torch.equal(da.scores, db.scores)
        assert torch.equal(da.boxes, db.boxes)


def make_priors(p: int, rng: np.random.Generator) -> torch.Tensor:
    cxcy = rng.uniform(0.1, 0.9, (p, 2))
    wh = rng.uniform(0.05, 0.5, (p, 2))
    return torch.from_numpy(np.concatenate([cxcy, wh], 1).astype(np.float32))


@st.composite
def cases(draw: st.DrawFn) -> dict:
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, 3))
    p = draw(st.integers(1, 80))
    c = draw(st.integers(2, 6))
    share = draw(st.sampled_from([0.0, 0.01, 0.03, 0.05, 0.1, 0.1, 0.3, 1.0]))  # share of (row, class) entries raised
    logits = rng.normal(0.0, 1.0, (n, p, c)).astype(np.float32)
    background = draw(st.sampled_from([0.0, 4.0, 8.0, 8.0]))
    logits[..., 0] += background  # background dominant: few rows can pass
    raised = rng.random((n, p, c - 1)) < share
    logits[..., 1:] += raised * rng.uniform(background - 2.0, background + 4.0, (n, p, c - 1)).astype(np.float32)
    if draw(st.booleans()):  # quantized logits: many equal probabilities inside and across rows
        logits = np.round(logits * 2) / 2
    locs = (rng.normal(0.0, 0.5, (n, p, 4))).astype(np.float32)
    if draw(st.booleans()) and n * p > 1:  # duplicated rows (same logits and locs) across priors / images
        src = rng.integers(0, n * p, size=max(1, n * p // 3))
        dst = rng.integers(0, n * p, size=src.size)
        lf, cf = logits.reshape(-1, c), locs.reshape(-1, 4)
        lf[dst], cf[dst] = lf[src], cf[src]
    probs = torch.softmax(torch.from_numpy(logits), -1)[..., 1:].reshape(-1)
    top = probs.sort(descending=True).values
    edge = float(top[rng.integers(0, max(1, top.numel() // 8))])  # one of the larger probabilities
    threshold = draw(st.sampled_from([
        "edge", "below", "above", 1e-6, 0.01, 0.05, 0.3, 0.5, 0.99, 1.0, 0.0,
    ]))
    if threshold == "edge":  # a probability in the head: candidates are strictly greater
        threshold = edge
    elif threshold == "below":
        threshold = float(np.nextafter(np.float32(edge), np.float32(0)))
    elif threshold == "above":
        threshold = float(np.nextafter(np.float32(edge), np.float32(1)))
    return dict(
        locs=torch.from_numpy(locs),
        logits=torch.from_numpy(logits),
        priors=make_priors(p, rng),
        score_threshold=threshold,
        iou_threshold=draw(st.sampled_from([0.3, 0.45, 0.7])),
        topk_candidates=draw(st.sampled_from([None, 1, 2, 5, 400])),
        max_detections=draw(st.sampled_from([1, 5, 200])),
        min_size=draw(st.sampled_from([0.0, 0.05])),
    )


@PROFILE
@given(cases())
def test_prefiltered_equals_dense(case: dict) -> None:
    kwargs = {k: v for k, v in case.items() if k not in ("locs", "logits", "priors")}
    args = (case["locs"], case["logits"], case["priors"])
    assert_identical(postprocess(*args, **kwargs), dense(*args, **kwargs))


@PROFILE
@given(cases())
def test_prefiltered_equals_dense_on_decoded_outputs(case: dict) -> None:
    """`decoded` export outputs: softmax scores and xyxy boxes go in directly (filter on probabilities)."""
    from ssdtrt.core.codec import decode

    probs = torch.softmax(case["logits"], -1)
    boxes = decode(case["locs"], case["priors"])
    kwargs = {k: v for k, v in case.items() if k not in ("locs", "logits", "priors")}
    kwargs.update(scores_are_probs=True, boxes_are_decoded=True)
    empty = torch.zeros(0, 4)  # decoded boxes need no priors
    assert_identical(postprocess(boxes, probs, empty, **kwargs), dense(boxes, probs, empty, **kwargs))


def ssd_heads(n: int, p: int, c: int, candidates: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Background-dominated heads with `candidates` (image, prior, class) entries raised above ~0.05."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, p, c, generator=g)
    logits[..., 0] += 6.0
    flat = logits[..., 1:].reshape(-1)
    idx = torch.randperm(flat.numel(), generator=g)[:candidates]
    flat[idx] += 6.0 + 3.0 * torch.rand(candidates, generator=g)
    logits[..., 1:] = flat.reshape(n, p, c - 1)
    return torch.randn(n, p, 4, generator=g) * 0.5, logits


@pytest.mark.parametrize("batch", [1, 2, 3])
@pytest.mark.parametrize("candidates", [0, 3, 200, 600])
def test_sparse_path_runs_and_matches(batch: int, candidates: int) -> None:
    locs, logits = ssd_heads(batch, 2000, 11, candidates * batch, seed=batch)
    priors = make_priors(2000, np.random.default_rng(batch))
    kwargs = dict(score_threshold=0.05, iou_threshold=0.5, topk_candidates=None, max_detections=100,
                  min_size=1.0 / 300.0)
    calls = []
    real = pp._select_sparse
    with mock.patch.object(pp, "_select_sparse", lambda *a: calls.append(1) or real(*a)):
        ours = postprocess(locs, logits, priors, **kwargs)
    assert calls, "the pre-filter should apply to background-dominated heads"
    assert_identical(ours, dense(locs, logits, priors, **kwargs))
    assert sum(d.scores.numel() for d in ours) > 0 or candidates == 0


def test_dense_fallback_when_most_rows_pass() -> None:
    locs, logits = ssd_heads(2, 300, 5, 0)
    logits[..., 0] -= 12.0  # background no longer dominant: nearly every row can pass
    assert pp._rows_that_can_pass(logits, 0.05, False) is None
    priors = make_priors(300, np.random.default_rng(0))
    assert_identical(postprocess(locs, logits, priors, score_threshold=0.05),
                     dense(locs, logits, priors, score_threshold=0.05))


def test_binding_topk_cap_falls_back_to_dense() -> None:
    locs, logits = ssd_heads(1, 2000, 3, 600)
    priors = make_priors(2000, np.random.default_rng(1))
    kwargs = dict(score_threshold=0.05, topk_candidates=50)
    rows = pp._rows_that_can_pass(logits, 0.05, False)
    assert rows is not None
    assert pp._select_sparse(locs, logits, priors, rows, 0.05, 0.45, 50, 200, 0.0, (0.1, 0.1, 0.2, 0.2), False,
                             False) is None
    assert_identical(postprocess(locs, logits, priors, **kwargs), dense(locs, logits, priors, **kwargs))


def test_prefilter_is_conservative_at_the_threshold() -> None:
    """A row whose best probability is exactly one ulp above the threshold survives the filter."""
    logits = torch.tensor([[[5.0, 2.0, -1.0], [5.0, 1.0, 1.0]]])
    probs = torch.softmax(logits, -1)
    p = probs[0, 0, 1]
    t = float(np.nextafter(np.float32(p), np.float32(0)))
    rows = pp._rows_that_can_pass(logits, t, False)
    assert rows is not None and 0 in rows.tolist()
    rows = pp._rows_that_can_pass(probs, t, True)
    assert rows is not None and rows.tolist() == [0]
    assert pp._rows_that_can_pass(probs, float(p), True).tolist() == []  # probabilities: exact, strict


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_prefiltered_equals_dense_on_cuda() -> None:
    for batch, candidates in [(1, 1000), (1, 8000), (8, 300)]:
        locs, logits = ssd_heads(batch, 8732, 81, candidates * batch, seed=candidates)
        priors = make_priors(8732, np.random.default_rng(candidates))
        kwargs = dict(score_threshold=0.05, iou_threshold=0.5, topk_candidates=None, max_detections=100,
                      min_size=1.0 / 300.0)
        args = (locs.cuda(), logits.cuda(), priors.cuda())
        ours, ref = postprocess(*args, **kwargs), dense(*args, **kwargs)
        assert_identical(ours, ref)
        assert all(d.boxes.is_cuda for d in ours)
