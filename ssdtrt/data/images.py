"""Image decoding for the file-backed readers (VOC, COCO): errors are DatasetErrors that name the file."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ssdtrt.core.errors import DatasetError


def read_image_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to HxWx3 uint8 RGB; DatasetError naming the file if it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found")
    # annotations refer to the stored pixel grid (PIL, which COCO/VOC tools use, ignores EXIF rotation too)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise DatasetError(f"{path}: cannot decode image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
