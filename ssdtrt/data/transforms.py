"""SSD training augmentations (opencv + numpy, vectorized over boxes) in the order of ssd.pytorch / the SSD paper:
photometric distortion -> expand (zoom out) -> min-IoU random crop -> horizontal flip -> resize.

Boxes are xyxy pixels in the convention of `ssdtrt.data.types` (pixel i covers [i, i+1)), so every geometric step
is exact integer arithmetic on coordinates: expand adds (left, top), crop subtracts the crop origin and clips, flip
maps x1 -> W - x2. Transforms return boxes normalized to [0, 1] by the size before the final resize.

Randomness: every call takes a `numpy.random.Generator`. TrainTransform derives two independent streams from it,
one for colour and one for geometry, so turning photometric distortion on or off leaves the geometry unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ssdtrt.core.boxes import box_iou_xyxy
from ssdtrt.core.config import Preprocess
from ssdtrt.preprocess.host import resize_rgb

#: Crop modes of SSD: None keeps the image, a float is the minimum IoU with some kept box, 0.0 is "any crop".
DEFAULT_CROP_MIN_IOUS: tuple[float | None, ...] = (None, 0.1, 0.3, 0.5, 0.7, 0.9, 0.0)


# ---------------------------------------------------------------------------------------------- colour


def photometric_distort(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    brightness_delta: float = 32.0,
    contrast_range: tuple[float, float] = (0.5, 1.5),
    saturation_range: tuple[float, float] = (0.5, 1.5),
    hue_delta_deg: float = 18.0,
    prob: float = 0.5,
    channel_swap_prob: float = 0.0,
) -> np.ndarray:
    """ssd.pytorch's PhotometricDistort on an RGB uint8 image: brightness, then contrast either first or last
    (coin flip), saturation and hue in HSV; each step applied with probability `prob`. Values are clipped to
    [0, 255] after every step (ssd.pytorch lets them overflow into the HSV conversion). Optional random channel
    permutation (ssd.pytorch's RandomLightingNoise) is off by default: it destroys colour semantics."""
    x = image.astype(np.float32)
    draws = rng.random(6)
    if draws[0] < prob:
        x += np.float32(rng.uniform(-brightness_delta, brightness_delta))
        np.clip(x, 0.0, 255.0, out=x)
    contrast_first = draws[1] < 0.5
    alpha = np.float32(rng.uniform(*contrast_range))
    if contrast_first and draws[2] < prob:
        x *= alpha
        np.clip(x, 0.0, 255.0, out=x)
    do_sat, do_hue = draws[3] < prob, draws[4] < prob
    if do_sat or do_hue:
        hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)  # float32: H in [0, 360), S in [0, 1], V in [0, 255]
        if do_sat:
            hsv[..., 1] = np.clip(hsv[..., 1] * np.float32(rng.uniform(*saturation_range)), 0.0, 1.0)
        if do_hue:
            hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(rng.uniform(-hue_delta_deg, hue_delta_deg)), 360.0)
        x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        np.clip(x, 0.0, 255.0, out=x)
    if not contrast_first and draws[2] < prob:
        x *= alpha
        np.clip(x, 0.0, 255.0, out=x)
    if draws[5] < channel_swap_prob:
        x = np.ascontiguousarray(x[..., rng.permutation(3)])
    return (x + np.float32(0.5)).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- geometry


def expand_to(
    image: np.ndarray, boxes_xyxy: np.ndarray, out_hw: tuple[int, int], left: int, top: int, fill_rgb: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Place `image` at (left, top) on an out_hw canvas of colour `fill_rgb`; boxes move by (left, top)."""
    h, w = image.shape[:2]
    out_h, out_w = out_hw
    if left < 0 or top < 0 or left + w > out_w or top + h > out_h:
        raise ValueError(f"expand_to: a {w}x{h} image at ({left}, {top}) does not fit in {out_w}x{out_h}")
    canvas = np.empty((out_h, out_w, 3), dtype=np.uint8)
    canvas[:] = np.clip(np.round(np.asarray(fill_rgb, dtype=np.float64)), 0, 255).astype(np.uint8)
    canvas[top : top + h, left : left + w] = image
    shift = np.array([left, top, left, top], dtype=np.float32)
    return canvas, (boxes_xyxy + shift).astype(np.float32)


def random_expand(
    image: np.ndarray,
    boxes_xyxy: np.ndarray,
    rng: np.random.Generator,
    *,
    max_ratio: float = 4.0,
    fill_rgb: Sequence[float] = (124.0, 116.0, 104.0),
    prob: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """SSD's zoom out: with probability `prob`, a canvas `ratio` in [1, max_ratio] times larger, image at a random
    integer offset (as ssd.pytorch's Expand)."""
    if max_ratio <= 1.0 or rng.random() >= prob:
        return image, boxes_xyxy
    h, w = image.shape[:2]
    ratio = rng.uniform(1.0, max_ratio)
    out_h, out_w = int(h * ratio), int(w * ratio)
    left = int(rng.uniform(0.0, out_w - w))
    top = int(rng.uniform(0.0, out_h - h))
    return expand_to(image, boxes_xyxy, (out_h, out_w), left, top, fill_rgb)


def crop_to(
    image: np.ndarray, boxes_xyxy: np.ndarray, labels: np.ndarray, rect_xyxy: Sequence[int], *, min_box_px: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop to an integer rect; keep the boxes whose centre lies strictly inside it, clipped to it and shifted to
    its origin; then drop boxes narrower or shorter than `min_box_px`."""
    x0, y0, x1, y1 = (int(v) for v in rect_xyxy)
    centres = (boxes_xyxy[:, :2] + boxes_xyxy[:, 2:]) * 0.5
    keep = (centres[:, 0] > x0) & (centres[:, 0] < x1) & (centres[:, 1] > y0) & (centres[:, 1] < y1)
    lo = np.array([x0, y0, x0, y0], dtype=np.float32)
    hi = np.array([x1, y1, x1, y1], dtype=np.float32)
    boxes = np.clip(boxes_xyxy[keep], lo, hi) - lo
    labels = labels[keep]
    big = ((boxes[:, 2] - boxes[:, 0]) >= min_box_px) & ((boxes[:, 3] - boxes[:, 1]) >= min_box_px)
    return np.ascontiguousarray(image[y0:y1, x0:x1]), boxes[big].astype(np.float32), labels[big]


def random_iou_crop(
    image: np.ndarray,
    boxes_xyxy: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    min_ious: Sequence[float | None] = DEFAULT_CROP_MIN_IOUS,
    trials: int = 50,
    min_scale: float = 0.3,
    max_aspect: float = 2.0,
    max_rounds: int = 20,
    min_box_px: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SSD's min-IoU random crop (torchvision's RandomIoUCrop semantics, trials vectorized).

    Pick a mode from `min_ious`: None returns the input; otherwise draw `trials` crops with sides in
    [min_scale, 1] of the image and aspect h/w in [1/max_aspect, max_aspect]; the first crop that contains at least
    one box centre and has IoU >= the mode with one of those boxes wins. If none does, pick a mode again (at most
    `max_rounds` times, then return the input). Images without boxes get any crop of valid shape.
    """
    h, w = image.shape[:2]
    for _ in range(max_rounds):
        mode = min_ious[int(rng.integers(len(min_ious)))]
        if mode is None:
            return image, boxes_xyxy, labels
        cw = rng.uniform(min_scale * w, w, trials)
        ch = rng.uniform(min_scale * h, h, trials)
        x0 = np.floor(rng.random(trials) * (w - cw))
        y0 = np.floor(rng.random(trials) * (h - ch))
        rects = np.stack([x0, y0, np.floor(x0 + cw), np.floor(y0 + ch)], axis=1)
        ok = (ch >= cw / max_aspect) & (ch <= cw * max_aspect) & (rects[:, 2] > x0) & (rects[:, 3] > y0)
        if boxes_xyxy.shape[0]:
            centres = (boxes_xyxy[:, :2] + boxes_xyxy[:, 2:]) * 0.5  # [K, 2]
            inside = (
                (rects[:, 0:1] < centres[:, 0])
                & (centres[:, 0] < rects[:, 2:3])
                & (rects[:, 1:2] < centres[:, 1])
                & (centres[:, 1] < rects[:, 3:4])
            )  # [T, K]
            ious = box_iou_xyxy(rects, boxes_xyxy.astype(np.float64))
            ok &= np.where(inside, ious, -1.0).max(axis=1) >= mode
        hits = np.flatnonzero(ok)
        if hits.size:
            return crop_to(image, boxes_xyxy, labels, rects[hits[0]].astype(np.int64), min_box_px=min_box_px)
    return image, boxes_xyxy, labels


def hflip(image: np.ndarray, boxes_xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right: x1' = W - x2, x2' = W - x1."""
    w = image.shape[1]
    flipped = boxes_xyxy.copy()
    flipped[:, 0] = w - boxes_xyxy[:, 2]
    flipped[:, 2] = w - boxes_xyxy[:, 0]
    return cv2.flip(image, 1), flipped


def normalize_boxes(boxes_xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel xyxy -> [0, 1] xyxy (clipped), float32 [K, 4]."""
    scale = np.array([width, height, width, height], dtype=np.float32)
    return np.clip(boxes_xyxy.astype(np.float32).reshape(-1, 4) / scale, 0.0, 1.0)


def fill_colour_rgb(spec: Preprocess) -> tuple[float, float, float]:
    """The preset's mean colour in RGB 0..255 (spec.mean is in the network's channel order)."""
    mean = tuple(255.0 * m for m in spec.mean)
    return (mean[2], mean[1], mean[0]) if spec.channel_order == "BGR" else (mean[0], mean[1], mean[2])


# ---------------------------------------------------------------------------------------------- pipelines


class TrainTransform:
    """The SSD training pipeline. __call__(image RGB uint8, boxes_xyxy_px [K,4], labels [K], rng) ->
    (image uint8 at network size, boxes_xyxy normalized float32 [K', 4], labels int64 [K'])."""

    def __init__(
        self,
        spec: Preprocess,
        *,
        photometric: bool = True,
        expand_max: float = 4.0,
        expand_prob: float = 0.5,
        crop_min_ious: Sequence[float | None] | None = DEFAULT_CROP_MIN_IOUS,
        crop_trials: int = 50,
        crop_min_scale: float = 0.3,
        flip_prob: float = 0.5,
        channel_swap_prob: float = 0.0,
        min_box_px: float = 1.0,
    ) -> None:
        self.spec = spec
        self.photometric = photometric
        self.expand_max = float(expand_max)
        self.expand_prob = float(expand_prob)
        self.crop_min_ious = tuple(crop_min_ious) if crop_min_ious else ()
        self.crop_trials = int(crop_trials)
        self.crop_min_scale = float(crop_min_scale)
        self.flip_prob = float(flip_prob)
        self.channel_swap_prob = float(channel_swap_prob)
        self.min_box_px = float(min_box_px)
        self.fill_rgb = fill_colour_rgb(spec)

    def __call__(
        self, image: np.ndarray, boxes_xyxy_px: np.ndarray, labels: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        colour_seed, geometry_seed = rng.integers(0, 2**63 - 1, size=2)
        geo = np.random.default_rng(int(geometry_seed))
        boxes = np.asarray(boxes_xyxy_px, dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if self.photometric:
            image = photometric_distort(
                image, np.random.default_rng(int(colour_seed)), channel_swap_prob=self.channel_swap_prob
            )
        image, boxes = random_expand(
            image, boxes, geo, max_ratio=self.expand_max, fill_rgb=self.fill_rgb, prob=self.expand_prob
        )
        if self.crop_min_ious:
            image, boxes, labels = random_iou_crop(
                image,
                boxes,
                labels,
                geo,
                min_ious=self.crop_min_ious,
                trials=self.crop_trials,
                min_scale=self.crop_min_scale,
                min_box_px=self.min_box_px,
            )
        if geo.random() < self.flip_prob:
            image, boxes = hflip(image, boxes)
        h, w = image.shape[:2]
        return resize_rgb(np.ascontiguousarray(image), self.spec), normalize_boxes(boxes, w, h), labels


class EvalTransform:
    """Resize only (ssdtrt.preprocess.host.resize_rgb, as every runtime does); boxes normalized by the input size.
    `rng` is accepted and ignored so both transforms share one call signature."""

    def __init__(self, spec: Preprocess) -> None:
        self.spec = spec

    def __call__(
        self,
        image: np.ndarray,
        boxes_xyxy_px: np.ndarray,
        labels: np.ndarray,
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, w = image.shape[:2]
        boxes = normalize_boxes(np.asarray(boxes_xyxy_px, dtype=np.float32), w, h)
        return resize_rgb(image, self.spec), boxes, np.asarray(labels, dtype=np.int64).reshape(-1)
