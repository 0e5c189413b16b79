"""Encode/decode with variances against the seeds' formulas written out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ssdtrt.core.codec import decode, encode


def test_encode_matches_hand_computed_values() -> None:
    prior = np.array([[0.5, 0.5, 0.2, 0.4]], dtype=np.float32)  # cx, cy, w, h
    box = np.array([[0.45, 0.35, 0.65, 0.75]], dtype=np.float32)  # xyxy: cx .55, cy .55, w .2, h .4
    # seed 000 _location_vec: 10 * (g_xy - p_xy) / p_wh, 5 * log(g_wh / p_wh)
    expected = np.array([[10 * 0.05 / 0.2, 10 * 0.05 / 0.4, 5 * np.log(1.0), 5 * np.log(1.0)]])
    np.testing.assert_allclose(encode(box, prior), expected, atol=2e-5)  # float32 inputs


def test_decode_matches_caffe_formula() -> None:
    prior = np.array([[0.3, 0.6, 0.1, 0.2]], dtype=np.float32)
    loc = np.array([[1.0, -2.0, 0.5, -1.0]], dtype=np.float32)
    cx, cy = 0.3 + 0.1 * 1.0 * 0.1, 0.6 + 0.1 * -2.0 * 0.2
    w, h = 0.1 * np.exp(0.2 * 0.5), 0.2 * np.exp(0.2 * -1.0)
    np.testing.assert_allclose(decode(loc, prior), [[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]], atol=1e-7)


def test_round_trip_numpy_and_torch_agree() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    priors = np.concatenate([rng.uniform(0.1, 0.9, (100, 2)), rng.uniform(0.05, 0.5, (100, 2))], 1).astype(np.float32)
    xy = rng.uniform(0, 0.5, (100, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.05, 0.5, (100, 2))], 1).astype(np.float32)
    offsets = encode(boxes, priors)
    np.testing.assert_allclose(decode(offsets, priors), boxes, atol=1e-5)
    offsets_t = encode(torch.from_numpy(boxes), torch.from_numpy(priors))
    np.testing.assert_allclose(offsets_t.numpy(), offsets, atol=1e-5)
    np.testing.assert_allclose(decode(offsets_t, torch.from_numpy(priors)).numpy(), boxes, atol=1e-5)


def test_decode_clamps_huge_width_to_stay_finite() -> None:
    prior = np.array([[0.5, 0.5, 0.1, 0.1]], dtype=np.float32)
    out = decode(np.array([[0, 0, 1e4, 1e4]], dtype=np.float32), prior)
    assert np.isfinite(out).all()
