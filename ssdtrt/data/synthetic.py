"""The embedded default dataset: coloured shapes on textured backgrounds, generated on the fly.

Every image is a pure function of (seed, split, index), so it is reproducible, needs no files, and is safe to
generate from any number of threads or DataLoader workers. The class is the shape, never the colour (colours are
random, only kept apart from the background), and objects are large enough (>= 10 % of the image side by default)
for a small SSD trained from scratch on a CPU to learn it in minutes.

Boxes are the tight boxes of the drawn pixels (clipped to the image); an object partly covered by a later one keeps
its full box. Overlap is bounded: two boxes never share more than `max_overlap` of the smaller box's area.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from ssdtrt.data.types import DetectionDataset, Sample
from ssdtrt.core.errors import DatasetError

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1, "test": 2}
DEFAULT_SPLIT_SIZES: dict[str, int] = {"train": 2000, "val": 200, "test": 200}

_SHIFT = 4  # cv2.fillPoly sub-pixel bits
_MIN_COLOUR_DISTANCE = 90.0  # RGB L2 distance kept between an object and the background under it


def _unit_polygon(label: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Outline(s) of one shape as [n, 2] float arrays around the origin; a second array is a hole (ring)."""
    name = CLASS_NAMES[label - 1]
    if name in ("circle", "ring"):
        t = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
        outer = np.stack([np.cos(t), np.sin(t)], axis=1)
        if name == "circle":
            return [outer]
        return [outer, outer * rng.uniform(0.45, 0.6)]
    if name == "square":
        pts = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
        theta = np.deg2rad(rng.uniform(-20.0, 20.0))
    elif name == "triangle":
        a = np.deg2rad(90.0 + 120.0 * np.arange(3))
        pts = np.stack([np.cos(a), np.sin(a)], axis=1)
        theta = rng.uniform(0.0, 2.0 * np.pi)
    elif name == "star":
        a = np.deg2rad(90.0 + 36.0 * np.arange(10))
        r = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
        pts = np.stack([r * np.cos(a), r * np.sin(a)], axis=1)
        theta = rng.uniform(0.0, 2.0 * np.pi)
    else:  # cross (plus sign)
        t = rng.uniform(0.22, 0.32)
        pts = np.array([[-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [t, t], [t, 1], [-t, 1], [-t, t], [-1, t],
                        [-1, -t], [-t, -t]], dtype=np.float64)  # fmt: skip
        theta = np.deg2rad(rng.uniform(0.0, 90.0))
    c, s = np.cos(theta), np.sin(theta)
    return [pts @ np.array([[c, s], [-s, c]])]


def _shape_mask(label: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A bool mask of one shape stretched to fill a width x height patch (1 px margin so nothing is clipped)."""
    polys = _unit_polygon(label, rng)
    lo, hi = polys[0].min(axis=0), polys[0].max(axis=0)
    scale = np.array([width - 1, height - 1], dtype=np.float64) / np.maximum(hi - lo, 1e-6)
    mask = np.zeros((height + 2, width + 2), dtype=np.uint8)
    for k, poly in enumerate(polys):
        px = ((poly - lo) * scale + 1.0) * (1 << _SHIFT)
        cv2.fillPoly(mask, [np.round(px).astype(np.int32)], 0 if k else 1, cv2.LINE_8, _SHIFT)
    return mask.astype(bool)


def _background(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    """Float32 SxSx3 background: a two-colour linear gradient plus low-frequency blotches ('flat': one colour).

    Both are sampled on a coarse grid and upsampled in one cv2.resize (a bilinear/cubic resize of a linear ramp is
    still a linear ramp), which keeps generation near a millisecond per image.
    """
    c0 = rng.uniform(0.0, 255.0, 3).astype(np.float32)
    if kind == "flat":
        return np.broadcast_to(c0, (size, size, 3)).copy()
    c1 = rng.uniform(0.0, 255.0, 3).astype(np.float32)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    cells = int(rng.integers(3, 12))
    coords = np.linspace(0.0, 1.0, cells, dtype=np.float32)
    t = np.cos(angle) * coords[None, :] + np.sin(angle) * coords[:, None]
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    grid = c0 + (c1 - c0) * t[..., None]
    grid += rng.normal(0.0, rng.uniform(5.0, 25.0), (cells, cells, 3)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def _pick_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random colour at least _MIN_COLOUR_DISTANCE from `under` (the background below the object)."""
    candidates = rng.uniform(0.0, 255.0, (16, 3)).astype(np.float32)
    far = np.linalg.norm(candidates - under, axis=1) >= _MIN_COLOUR_DISTANCE
    if far.any():
        return candidates[int(np.argmax(far))]
    return np.where(under > 127.0, 0.0, 255.0).astype(np.float32)


def _overlap_ok(box: np.ndarray, boxes: np.ndarray, max_overlap: float) -> bool:
    """True when `box` covers at most `max_overlap` of the smaller box's area against every box in `boxes`."""
    if boxes.shape[0] == 0:
        return True
    wh = np.clip(np.minimum(box[2:], boxes[:, 2:]) - np.maximum(box[:2], boxes[:, :2]), 0.0, None)
    inter = wh[:, 0] * wh[:, 1]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    smaller = np.minimum(areas, (box[2] - box[0]) * (box[3] - box[1]))
    return bool(np.all(inter <= max_overlap * smaller))


class SyntheticShapes(DetectionDataset):
    """Deterministic shapes dataset; `size` images per split (default train 2000, val/test 200) at `image_size` px."""

    class_names = CLASS_NAMES

    def __init__(
        self,
        split: str = "train",
        *,
        size: int | None = None,
        seed: int = 0,
        image_size: int = 160,
        max_objects: int = 6,
        min_object_px: int | None = None,
        max_object_px: int | None = None,
        max_overlap: float = 0.3,
        truncation_prob: float = 0.15,
        noise_sigma_max: float = 8.0,
        background: Literal["textured", "flat"] = "textured",
    ) -> None:
        if split not in SPLIT_CODES:
            raise DatasetError(f"synthetic: unknown split {split!r}; choose one of: {', '.join(SPLIT_CODES)}")
        if seed < 0:
            raise DatasetError(f"synthetic: seed must be >= 0, not {seed}")
        self.split = split
        self.size = DEFAULT_SPLIT_SIZES[split] if size is None else int(size)
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.max_objects = int(max_objects)
        self.min_object_px = int(min_object_px if min_object_px is not None else round(0.1 * image_size))
        self.max_object_px = int(max_object_px if max_object_px is not None else round(0.6 * image_size))
        if not 4 <= self.min_object_px <= self.max_object_px <= self.image_size:
            raise DatasetError(
                f"synthetic: need 4 <= min_object_px ({self.min_object_px}) <= max_object_px ({self.max_object_px})"
                f" <= image_size ({self.image_size})"
            )
        self.max_overlap = float(max_overlap)
        self.truncation_prob = float(truncation_prob)
        self.noise_sigma_max = float(noise_sigma_max)
        self.background = background

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Sample:
        return self.generate(self._check_index(index))[0]

    def generate(self, index: int, *, with_masks: bool = False) -> tuple[Sample, np.ndarray | None]:
        """Sample `index`; with_masks also returns bool [K, S, S] instance masks (each object's drawn pixels,
        including those a later object paints over)."""
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], int(index)])
        s = self.image_size
        image = _background(rng, s, self.background)
        n_objects = 0 if rng.random() < 0.05 else int(rng.integers(1, self.max_objects + 1))
        boxes = np.zeros((0, 4), dtype=np.float32)
        labels: list[int] = []
        pieces: list[tuple[np.ndarray, int, int]] = []  # visible patch part and its top-left in the image
        log_lo, log_hi = np.log(self.min_object_px), np.log(self.max_object_px)
        min_side = min(12, self.min_object_px)
        for _ in range(n_objects * 8):  # rejection sampling, bounded
            if len(labels) == n_objects:
                break
            label = int(rng.integers(1, len(CLASS_NAMES) + 1))
            side = float(np.exp(rng.uniform(log_lo, log_hi)))
            aspect = float(np.exp(rng.uniform(-0.25, 0.25)))
            w = min(max(round(side * aspect**0.5), self.min_object_px), s)
            h = min(max(round(side / aspect**0.5), self.min_object_px), s)
            patch = _shape_mask(label, w, h, rng)  # (h+2, w+2), one margin pixel each side
            ph, pw = patch.shape
            if rng.random() < self.truncation_prob:  # centre anywhere: the shape may leave the frame
                x0 = int(rng.integers(-pw // 2, s - pw // 2 + 1))
                y0 = int(rng.integers(-ph // 2, s - ph // 2 + 1))
            else:
                x0 = int(rng.integers(0, s - pw + 1))
                y0 = int(rng.integers(0, s - ph + 1))
            fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + pw, s), min(y0 + ph, s)
            if fx1 <= fx0 or fy1 <= fy0:
                continue
            vis = patch[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
            cols, rows = np.flatnonzero(vis.any(axis=0)), np.flatnonzero(vis.any(axis=1))
            if cols.size == 0:
                continue
            box = np.array([fx0 + cols[0], fy0 + rows[0], fx0 + cols[-1] + 1, fy0 + rows[-1] + 1], dtype=np.float32)
            if min(box[2] - box[0], box[3] - box[1]) < min_side:
                continue
            if 2 * np.count_nonzero(vis) < np.count_nonzero(patch) or not _overlap_ok(box, boxes, self.max_overlap):
                continue  # more than half outside the frame, or too much overlap
            region = image[fy0:fy1, fx0:fx1]
            region[vis] = _pick_colour(rng, region[rows[rows.size // 2], cols[cols.size // 2]])
            boxes = np.concatenate([boxes, box[None]])
            labels.append(label)
            pieces.append((vis, fx0, fy0))
        sigma = rng.uniform(0.0, self.noise_sigma_max)
        if sigma > 0.0:  # uniform noise with standard deviation sigma (5x cheaper to draw than Gaussian)
            image += (rng.random(image.shape, dtype=np.float32) - 0.5) * np.float32(sigma * 12**0.5)
        image += np.float32(0.5)  # round, not truncate, in the cast below
        image_u8 = np.clip(image, 0.0, 255.0, out=image).astype(np.uint8)
        k = len(labels)
        sample = Sample(image_u8, boxes, np.asarray(labels, dtype=np.int64), np.zeros(k, dtype=bool), int(index))
        if not with_masks:
            return sample, None
        masks = np.zeros((k, s, s), dtype=bool)
        for j, (vis, fx0, fy0) in enumerate(pieces):
            masks[j, fy0 : fy0 + vis.shape[0], fx0 : fx0 + vis.shape[1]] = vis
        return sample, masks
