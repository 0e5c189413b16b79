"""SSD augmentations keep boxes consistent with the pixels: filled rectangles of distinct colours are drawn at the
boxes, each transform runs, and every output box must still enclose exactly its colour region. Geometry of expand,
crop and flip is also checked numerically with an image whose pixels encode their own coordinates."""

from __future__ import annotations

import numpy as np
import pytest

from ssdtrt.core.boxes import box_iou_xyxy
from ssdtrt.core.config import Preprocess, get_preset
from ssdtrt.data.transforms import (
    EvalTransform,
    TrainTransform,
    crop_to,
    expand_to,
    fill_colour_rgb,
    hflip,
    photometric_distort,
    random_expand,
    random_iou_crop,
)
from ssdtrt.preprocess.host import resize_rgb

COLOURS = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255], [255, 255, 255]], np.uint8
)
SPEC = get_preset("ssd-small").preprocess  # 160 x 160, ImageNet mean (fill colour ~ (124, 116, 104))


def make_scene(rng: np.random.Generator, h: int = 240, w: int = 320, k: int = 5):
    """Black image with k non-overlapping filled rectangles; label L has colour COLOURS[L - 1]."""
    image = np.zeros((h, w, 3), np.uint8)
    boxes: list[list[int]] = []
    while len(boxes) < k:
        bw, bh = rng.integers(20, w // 2), rng.integers(20, h // 2)
        x0, y0 = rng.integers(0, w - bw), rng.integers(0, h - bh)
        cand = [x0, y0, x0 + bw, y0 + bh]
        if boxes and box_iou_xyxy(np.array([cand], float), np.array(boxes, float)).max() > 0:
            continue  # touching-free: no two rectangles overlap
        boxes.append(cand)
    labels = np.arange(1, k + 1, dtype=np.int64)
    for (x0, y0, x1, y1), lab in zip(boxes, labels):
        image[y0:y1, x0:x1] = COLOURS[lab - 1]
    return image, np.array(boxes, np.float32), labels


def colour_bbox(image: np.ndarray, colour: np.ndarray, tol: int = 0) -> np.ndarray | None:
    """Continuous-pixel bbox of the pixels within `tol` of `colour` (None if there are none)."""
    mask = np.all(np.abs(image.astype(int) - colour.astype(int)) <= tol, axis=-1)
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def assert_boxes_match_colours(image, boxes_px, labels, *, tol: int = 0, atol: float = 0.0, min_side: float = 0.0):
    for box, lab in zip(boxes_px, labels):
        if min(box[2] - box[0], box[3] - box[1]) < min_side:
            continue
        got = colour_bbox(image, COLOURS[lab - 1], tol)
        assert got is not None, f"label {lab}: colour vanished, box {box}"
        np.testing.assert_allclose(got, box, atol=atol, err_msg=f"label {lab}")


def coord_image(h: int, w: int) -> np.ndarray:
    """Pixel (y, x) holds (x % 256, y % 256, 16 * (x // 256) + y // 256): any crop reveals its origin."""
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs % 256, ys % 256, 16 * (xs // 256) + ys // 256], axis=-1).astype(np.uint8)


def decode_coord(pixel: np.ndarray) -> tuple[int, int]:
    r, g, b = (int(v) for v in pixel)
    return r + 256 * (b // 16), g + 256 * (b % 16)


def test_hflip_maps_x1_to_w_minus_x2() -> None:
    image, boxes, labels = make_scene(np.random.default_rng(0))
    out, flipped = hflip(image, boxes)
    w = image.shape[1]
    np.testing.assert_array_equal(flipped[:, 0], w - boxes[:, 2])
    np.testing.assert_array_equal(flipped[:, 2], w - boxes[:, 0])
    np.testing.assert_array_equal(flipped[:, [1, 3]], boxes[:, [1, 3]])
    np.testing.assert_array_equal(out, image[:, ::-1])
    assert_boxes_match_colours(out, flipped, labels)


def test_expand_to_geometry() -> None:
    image, boxes, labels = make_scene(np.random.default_rng(1))
    out, moved = expand_to(image, boxes, (500, 700), left=37, top=91, fill_rgb=(10, 20, 30))
    assert out.shape == (500, 700, 3)
    np.testing.assert_array_equal(moved, boxes + np.array([37, 91, 37, 91], np.float32))
    np.testing.assert_array_equal(out[91 : 91 + 240, 37 : 37 + 320], image)
    assert np.all(out[:91] == (10, 20, 30)) and np.all(out[:, 357:] == (10, 20, 30))
    assert_boxes_match_colours(out, moved, labels)
    with pytest.raises(ValueError):
        expand_to(image, boxes, (240, 320), left=1, top=0, fill_rgb=(0, 0, 0))


def test_random_expand_ratio_offset_and_fill() -> None:
    fill = fill_colour_rgb(SPEC)
    np.testing.assert_allclose(fill, np.array(SPEC.mean) * 255)
    bgr = Preprocess(300, 300, (0.1, 0.2, 0.3), (1.0, 1.0, 1.0), channel_order="BGR")
    np.testing.assert_allclose(fill_colour_rgb(bgr), (76.5, 51.0, 25.5))
    image = coord_image(120, 160)
    boxes = np.array([[10, 20, 50, 70]], np.float32)
    ratios = []
    for seed in range(40):
        out, moved = random_expand(image, boxes, np.random.default_rng(seed), max_ratio=3.0, fill_rgb=fill)
        ratios.append(out.shape[1] / 160)
        if out.shape == image.shape:
            np.testing.assert_array_equal(moved, boxes)
            continue
        assert out.shape[0] <= 3 * 120 and out.shape[1] <= 3 * 160
        shift = moved[0, :2] - boxes[0, :2]
        left, top = int(shift[0]), int(shift[1])
        np.testing.assert_array_equal(out[top : top + 120, left : left + 160], image)
        assert np.array_equal(out[0, 0], np.round(fill).astype(np.uint8)) or (left == 0 and top == 0)
    assert 0.25 < np.mean(np.array(ratios) == 1.0) < 0.75, "expand applies with probability 1/2"


def test_crop_to_centre_rule_clip_and_degenerate_drop() -> None:
    image = coord_image(100, 100)
    boxes = np.array(
        [
            [10, 10, 30, 30],  # centre (20, 20) inside -> kept, clipped to the crop's left/top
            [0, 0, 10, 10],  # centre (5, 5) outside -> dropped
            [40, 40, 90, 95],  # centre (65, 67.5) inside -> clipped at right/bottom
            [69.3, 30, 70.5, 40],  # centre (69.9, 35) inside, clipped to 0.7 px wide -> dropped as degenerate
        ],
        np.float32,
    )
    labels = np.array([1, 2, 3, 4])
    out, b, lab = crop_to(image, boxes, labels, (15, 12, 70, 80))
    assert out.shape == (68, 55, 3) and decode_coord(out[0, 0]) == (15, 12)
    np.testing.assert_array_equal(lab, [1, 3])
    np.testing.assert_array_equal(b, [[0, 0, 15, 18], [25, 28, 55, 68]])


@pytest.mark.parametrize("min_iou", [0.1, 0.5, 0.9, 0.0])
def test_random_iou_crop_constraints(min_iou: float) -> None:
    """Recover each crop rect from the coordinate image and check all of SSD's rules numerically."""
    h, w = 300, 400
    image = coord_image(h, w)
    rng = np.random.default_rng(123)
    cropped = 0
    for seed in range(30):
        sizes = rng.uniform(0.05, 0.8, (4, 2)) * [w, h]  # small to large, so every min-IoU mode is reachable
        corners = rng.uniform(0, 1, (4, 2)) * ([w, h] - sizes)
        boxes = np.concatenate([corners, corners + sizes], axis=1).astype(np.float32)
        labels = np.arange(1, 5)
        out, b, lab = random_iou_crop(image, boxes, labels, np.random.default_rng(seed), min_ious=(min_iou,))
        if out.shape == image.shape:
            continue  # no crop satisfied the constraint in the allowed rounds
        cropped += 1
        ch, cw = out.shape[:2]
        x0, y0 = decode_coord(out[0, 0])
        assert cw >= int(0.3 * w) - 1 and ch >= int(0.3 * h) - 1
        assert 0.5 - 0.02 <= ch / cw <= 2.0 + 0.02
        rect = np.array([x0, y0, x0 + cw, y0 + ch], np.float32)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        inside = np.all((centres > rect[:2]) & (centres < rect[2:]), axis=1)
        ious = box_iou_xyxy(rect[None].astype(np.float64), boxes.astype(np.float64))[0]
        assert ious[inside].max() >= min_iou - 1e-9
        expected = np.clip(boxes[inside], rect[[0, 1, 0, 1]], rect[[2, 3, 2, 3]]) - rect[[0, 1, 0, 1]]
        big = np.all(expected[:, 2:] - expected[:, :2] >= 1.0, axis=1)
        np.testing.assert_allclose(b, expected[big], atol=1e-4)
        np.testing.assert_array_equal(lab, labels[inside][big])
    assert cropped >= (15 if min_iou <= 0.5 else 3)


def test_random_iou_crop_without_boxes() -> None:
    image = coord_image(100, 120)
    shapes = set()
    for seed in range(20):
        empty_boxes, empty_labels = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        out, b, lab = random_iou_crop(image, empty_boxes, empty_labels, np.random.default_rng(seed))
        assert b.shape == (0, 4) and lab.shape == (0,)
        shapes.add(out.shape)
    assert len(shapes) > 1, "empty images still get cropped"


def test_photometric_distort_independent_checks() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(40, 200, (32, 48, 3), dtype=np.uint8)
    assert np.array_equal(photometric_distort(image, rng, prob=0.0), image)
    # brightness only: a constant shift of every value
    out = photometric_distort(
        image, np.random.default_rng(1), prob=1.0, contrast_range=(1, 1), saturation_range=(1, 1), hue_delta_deg=0.0
    ).astype(int)
    shift = out - image.astype(int)
    assert np.ptp(shift) <= 1 and abs(shift.mean()) > 0.5
    # zero saturation: grey image whose value channel (max of RGB) is the input's
    out = photometric_distort(
        image, np.random.default_rng(2), prob=1.0, brightness_delta=0.0, contrast_range=(1, 1),
        saturation_range=(0, 0), hue_delta_deg=0.0,
    )  # fmt: skip
    assert np.ptp(out.astype(int), axis=-1).max() <= 1
    np.testing.assert_allclose(out[..., 0], image.max(axis=-1), atol=1)
    # full distortion keeps shape and dtype and changes the image
    out = photometric_distort(image, np.random.default_rng(3), prob=1.0)
    assert out.shape == image.shape and out.dtype == np.uint8 and not np.array_equal(out, image)


def test_eval_transform_is_resize_only() -> None:
    image, boxes, labels = make_scene(np.random.default_rng(5))
    out, b, lab = EvalTransform(SPEC)(image, boxes, labels)
    np.testing.assert_array_equal(out, resize_rgb(image, SPEC))
    np.testing.assert_allclose(b, boxes / np.array([320, 240, 320, 240], np.float32), atol=1e-7)
    np.testing.assert_array_equal(lab, labels)
    assert_boxes_match_colours(out, b * 160, lab, tol=60, atol=2.0, min_side=3)


@pytest.mark.parametrize("expand_max", [4.0, 2.0])
def test_train_transform_keeps_boxes_on_their_pixels(expand_max: float) -> None:
    transform = TrainTransform(SPEC, photometric=False, expand_max=expand_max)
    outcomes = {"moved": 0, "dropped": 0}
    plain = EvalTransform(SPEC)
    for seed in range(80):
        image, boxes, labels = make_scene(np.random.default_rng(1000 + seed))
        out, b, lab = transform(image, boxes, labels, np.random.default_rng(seed))
        assert out.shape == (160, 160, 3) and out.dtype == np.uint8
        assert b.dtype == np.float32 and lab.dtype == np.int64 and b.shape == (len(lab), 4)
        assert np.all((b >= 0) & (b <= 1)) and np.all(b[:, 2:] > b[:, :2])
        assert len(set(lab.tolist())) == len(lab) and set(lab.tolist()) <= set(labels.tolist())
        assert_boxes_match_colours(out, b * 160, lab, tol=60, atol=2.0, min_side=3)
        outcomes["dropped"] += len(lab) < len(labels)
        outcomes["moved"] += len(lab) < len(labels) or not np.allclose(b, plain(image, boxes, labels)[1])
    assert outcomes["moved"] >= 40 and outcomes["dropped"] >= 5, outcomes


def test_photometric_does_not_change_geometry() -> None:
    on, off = TrainTransform(SPEC), TrainTransform(SPEC, photometric=False)
    for seed in range(20):
        image, boxes, labels = make_scene(np.random.default_rng(seed))
        a = on(image, boxes, labels, np.random.default_rng(seed))
        b = off(image, boxes, labels, np.random.default_rng(seed))
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[2], b[2])


def test_train_transform_empty_and_deterministic() -> None:
    transform = TrainTransform(SPEC)
    image = np.full((100, 140, 3), 77, np.uint8)
    out, b, lab = transform(image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.random.default_rng(0))
    assert out.shape == (160, 160, 3) and b.shape == (0, 4) and lab.shape == (0,)
    scene = make_scene(np.random.default_rng(9))
    x = transform(*scene, np.random.default_rng(42))
    y = transform(*scene, np.random.default_rng(42))
    assert all(np.array_equal(p, q) for p, q in zip(x, y))
