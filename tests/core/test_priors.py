"""Priors against torchvision's DefaultBoxGenerator and seed 000's DefaultBoxes (independent references)."""

from __future__ import annotations

import itertools
from math import sqrt

import numpy as np
import pytest

from ssdtrt.core.config import get_preset, preset_names
from ssdtrt.core.errors import UnknownPresetError
from ssdtrt.core.priors import default_boxes


def seed000_default_boxes() -> np.ndarray:
    """Seed 000's DefaultBoxes (dboxes300_coco), transcribed: shape-major loops, clamp of all four values."""
    fig_size, feat_size, steps = 300, [38, 19, 10, 5, 3, 1], [8, 16, 32, 64, 100, 300]
    scales, aspect_ratios = [21, 45, 99, 153, 207, 261, 315], [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    fk = fig_size / np.array(steps)
    boxes = []
    for idx, sfeat in enumerate(feat_size):
        sk1, sk2 = scales[idx] / fig_size, scales[idx + 1] / fig_size
        sk3 = sqrt(sk1 * sk2)
        all_sizes = [(sk1, sk1), (sk3, sk3)]
        for alpha in aspect_ratios[idx]:
            w, h = sk1 * sqrt(alpha), sk1 / sqrt(alpha)
            all_sizes += [(w, h), (h, w)]
        for w, h in all_sizes:
            for i, j in itertools.product(range(sfeat), repeat=2):
                boxes.append(((j + 0.5) / fk[idx], (i + 0.5) / fk[idx], w, h))
    return np.clip(np.asarray(boxes, dtype=np.float32), 0, 1)


def test_ssd300_presets_have_8732_priors() -> None:
    for name in ("ssd300-vgg16", "ssd300-resnet50"):
        assert default_boxes(name).shape == (8732, 4)
        assert get_preset(name).priors.num_priors == 8732


def test_every_preset_prior_count_matches_spec() -> None:
    for name in preset_names():
        spec = get_preset(name)
        boxes = default_boxes(spec)
        assert boxes.dtype == np.float32 and boxes.shape == (spec.priors.num_priors, 4)


def test_vgg16_priors_equal_torchvision_in_order() -> None:
    torch = pytest.importorskip("torch")
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator

    gen = DefaultBoxGenerator(
        [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
        steps=[8, 16, 32, 64, 100, 300],
    )
    with torch.no_grad():
        ref = gen._grid_default_boxes([[f, f] for f in (38, 19, 10, 5, 3, 1)], [300, 300]).numpy()
    ours = default_boxes("ssd300-vgg16")
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)
    assert ours[:, :2].max() == pytest.approx(1.0133333, abs=1e-6)  # torchvision does not clip centres


def test_resnet50_priors_equal_seed000_as_a_set() -> None:
    ref = seed000_default_boxes()
    ours = default_boxes("ssd300-resnet50")
    assert ours.shape == ref.shape
    key = lambda b: b[np.lexsort(np.round(b, 6).T[::-1])]  # noqa: E731 - sort rows for set comparison
    np.testing.assert_allclose(key(ours), key(ref), atol=1e-6, rtol=0)
    assert ours.min() >= 0 and ours.max() <= 1


def test_first_cell_order_matches_seed001() -> None:
    """Seed 001 order inside a cell: s_k, sqrt(s_k s_k+1), (s√2, s/√2), (s/√2, s√2)."""
    s_k, s_next = 21 / 300, 45 / 300
    expected_wh = [(s_k, s_k), (sqrt(s_k * s_next),) * 2, (s_k * sqrt(2), s_k / sqrt(2)), (s_k / sqrt(2), s_k * sqrt(2))]
    ours = default_boxes("ssd300-vgg16")
    np.testing.assert_allclose(ours[:4, 2:], np.asarray(expected_wh), atol=1e-7)
    np.testing.assert_allclose(ours[:4, :2], 4 / 300, atol=1e-7)
    np.testing.assert_allclose(ours[4, :2], (12 / 300, 4 / 300), atol=1e-7)  # next cell: x moves first


def test_unknown_preset_is_a_typed_error() -> None:
    with pytest.raises(UnknownPresetError, match="ssd300-vgg16"):
        default_boxes("ssd512-nope")
