"""The embedded synthetic shapes dataset: determinism, tight boxes, bounded overlap, speed."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ssdtrt.data import DetectionDataset, open_dataset
from ssdtrt.data.synthetic import CLASS_NAMES, SyntheticShapes
from ssdtrt.core.errors import DatasetError


def _same(a, b) -> bool:
    return (
        np.array_equal(a.image, b.image)
        and np.array_equal(a.boxes_xyxy, b.boxes_xyxy)
        and np.array_equal(a.labels, b.labels)
    )


def test_open_dataset_defaults() -> None:
    train, val = open_dataset("synthetic", "train"), open_dataset("synthetic", "val")
    assert isinstance(train, DetectionDataset)
    assert (len(train), len(val)) == (2000, 200)
    assert train.class_names == CLASS_NAMES == ("circle", "square", "triangle", "star", "cross", "ring")
    assert train.num_classes == 7
    assert len(open_dataset("synthetic", "val", size=17)) == 17
    s = train[0]
    assert s.image.shape == (160, 160, 3) and s.image.dtype == np.uint8
    assert s.boxes_xyxy.dtype == np.float32 and s.labels.dtype == np.int64 and s.difficult.dtype == bool
    with pytest.raises(IndexError):
        train[2000]
    with pytest.raises(DatasetError, match="split"):
        open_dataset("synthetic", "holdout")


def test_deterministic_and_splits_differ() -> None:
    a, b = SyntheticShapes("train", seed=3), SyntheticShapes("train", seed=3)
    for i in (0, 1, 57, 1999):
        assert _same(a[i], b[i])
        assert _same(a[i], a[i])  # no hidden state between calls
    val, other_seed = SyntheticShapes("val", seed=3), SyntheticShapes("train", seed=4)
    assert not any(np.array_equal(a[i].image, val[i].image) for i in range(10))
    assert not any(np.array_equal(a[i].image, other_seed[i].image) for i in range(10))


def test_thread_safe_random_access() -> None:
    ds = SyntheticShapes("train", seed=1)
    order = [5, 3, 9, 0, 5, 7, 1, 3]
    serial = [ds[i] for i in order]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(ds.__getitem__, order))
    assert all(_same(x, y) for x, y in zip(serial, parallel))


def test_boxes_inside_sizes_labels_overlap() -> None:
    ds = SyntheticShapes("train", seed=0)
    counts = np.zeros(len(CLASS_NAMES) + 1, dtype=int)
    n_objects = []
    for i in range(200):
        s = ds[i]
        b = s.boxes_xyxy
        assert np.all(b[:, :2] >= 0) and np.all(b[:, 2:] <= 160)
        assert np.all(b[:, 2:] - b[:, :2] >= 12), "objects must not be tiny"
        assert np.all((s.labels >= 1) & (s.labels <= len(CLASS_NAMES))) and not s.difficult.any()
        counts += np.bincount(s.labels, minlength=counts.size)
        n_objects.append(len(s.labels))
        # overlap bound: intersection <= 0.3 * smaller box area for every pair
        lt = np.maximum(b[:, None, :2], b[None, :, :2])
        rb = np.minimum(b[:, None, 2:], b[None, :, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
        area = np.prod(b[:, 2:] - b[:, :2], axis=-1)
        off_diag = ~np.eye(len(b), dtype=bool)
        assert np.all(inter[off_diag] <= 0.3 * np.minimum(area[:, None], area[None, :])[off_diag] + 1e-3)
    assert counts[0] == 0 and counts[1:].min() >= 60, counts  # every class well represented
    assert 2.0 <= np.mean(n_objects) <= 4.5 and min(n_objects) == 0 and max(n_objects) == 6
    sides = np.concatenate([np.max(ds[i].boxes_xyxy[:, 2:] - ds[i].boxes_xyxy[:, :2], axis=1) for i in range(200)])
    assert sides.min() < 24 and sides.max() > 80, "sizes should range from small to large"


def test_boxes_are_tight_boxes_of_drawn_pixels() -> None:
    ds = SyntheticShapes("val", seed=0)
    for i in range(50):
        sample, masks = ds.generate(i, with_masks=True)
        assert masks is not None and masks.shape == (len(sample.labels), 160, 160)
        for box, mask in zip(sample.boxes_xyxy, masks):
            ys, xs = np.nonzero(mask)
            assert np.array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


def test_lone_object_pixels_touch_box_edges() -> None:
    """Independent of the masks: on a flat noise-free background, the pixels that differ from the background are
    exactly the object, and their extent is the box."""
    ds = SyntheticShapes("train", seed=7, max_objects=1, background="flat", noise_sigma_max=0.0, truncation_prob=0.3)
    checked = 0
    for i in range(60):
        s = ds[i]
        if len(s.labels) != 1:
            continue
        # flat background: the most common corner colour is the background (an object covers at most two corners)
        corners = np.array([s.image[0, 0], s.image[0, -1], s.image[-1, 0], s.image[-1, -1]])
        values, freq = np.unique(corners, axis=0, return_counts=True)
        background = values[np.argmax(freq)]
        ys, xs = np.nonzero(np.any(s.image != background, axis=-1))
        assert np.array_equal(s.boxes_xyxy[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        checked += 1
    assert checked >= 50


def test_generation_speed() -> None:
    ds = SyntheticShapes("train", seed=0)
    ds[0]
    t0 = time.perf_counter()
    for i in range(100):
        ds[i]
    ms = (time.perf_counter() - t0) * 10.0
    assert ms < 25.0, f"{ms:.2f} ms per image"  # ~1.5-2.5 ms on a shared 2-core machine
