"""Annotated images: boxes, class names and scores drawn with opencv (torch-free), written atomically.

Colours come from a fixed palette of well-separated hues (one per label), the label text sits on a filled box of the
same colour in black or white, whichever contrasts more; line width and font scale follow the image size.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ssdtrt.core.detections import Detections
from ssdtrt.core.errors import SSDTRTError
from ssdtrt.io.files import atomic_path

#: Tableau-20-like palette (RGB), readable on photos; label L uses PALETTE_RGB[(L - 1) % 20].
PALETTE_RGB: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194),
    (127, 127, 127), (188, 189, 34), (23, 190, 207), (174, 199, 232), (255, 187, 120), (152, 223, 138),
    (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141),
    (158, 218, 229),
)
#: Extensions cv2 can write that we keep for annotated copies; anything else is written as .jpg.
WRITABLE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def label_color(label: int) -> tuple[int, int, int]:
    """The RGB colour of a label (1-based)."""
    return PALETTE_RGB[(int(label) - 1) % len(PALETTE_RGB)]


def draw_detections(image_rgb: np.ndarray, dets: Detections, min_score: float = 0.0) -> np.ndarray:
    """A copy of `image_rgb` (HxWx3 uint8) with the detections (pixel xyxy) scoring >= `min_score` drawn on it.

    Lower-scoring boxes are drawn first so the best ones end up on top.
    """
    canvas = np.ascontiguousarray(image_rgb.copy())
    d = dets.numpy()
    if len(d) == 0:
        return canvas
    height, width = canvas.shape[:2]
    side = min(height, width)
    thickness = max(1, round(side / 320))
    font_scale = float(np.clip(side / 640, 0.35, 8.0))
    font_thick = max(1, round(font_scale * 1.5))
    boxes = np.asarray(d.boxes, dtype=np.float64)
    boxes = np.clip(np.rint(boxes), 0, [width - 1, height - 1, width - 1, height - 1]).astype(np.int64)
    scores = np.asarray(d.scores, dtype=np.float64)
    names = d.names()
    order = np.argsort(scores, kind="stable")  # ascending: the best box is drawn last
    order = order[scores[order] >= min_score]
    for i in order:  # one cv2 call per drawn box: drawing is inherently per box
        x1, y1, x2, y2 = (int(v) for v in boxes[i])
        color = label_color(int(d.labels[i]))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness, cv2.LINE_8)  # axis-aligned: crisp
        text = f"{names[i]} {scores[i]:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, font_thick)
        ty = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else min(y1 + thickness, height - th - base - 2)
        ty = max(ty, 0)
        tx = int(np.clip(x1, 0, max(width - tw - 2, 0)))
        cv2.rectangle(canvas, (tx, ty), (tx + tw + 2, ty + th + base + 2), color, -1)
        text_color = (0, 0, 0) if _luma(color) > 140 else (255, 255, 255)
        cv2.putText(canvas, text, (tx + 1, ty + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, text_color, font_thick,
                    cv2.LINE_AA)
    return canvas


def _luma(rgb: tuple[int, int, int]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def annotated_suffix(source_suffix: str) -> str:
    """The extension of an annotated copy: the source's when cv2 writes it, else .jpg (videos, .ppm, ...)."""
    suffix = source_suffix.lower()
    return suffix if suffix in WRITABLE_SUFFIXES else ".jpg"


def write_image(path: str | os.PathLike[str], image_rgb: np.ndarray, jpeg_quality: int = 92) -> Path:
    """Encode (format from the suffix) and write atomically; unicode paths work (bytes are written by Python)."""
    path = Path(path)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(path.suffix or ".jpg", np.ascontiguousarray(image_rgb[:, :, ::-1]), params)
    if not ok:
        raise SSDTRTError(f"{path}: opencv cannot encode an image as {path.suffix or '.jpg'}")
    with atomic_path(path, suffix=path.suffix) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return path
