"""Image → network input, torch-free (opencv + numpy). Training eval, calibration and every runtime use this one
function so that INT8 calibration sees exactly what inference sees."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ssdtrt.core.config import Preprocess

_INTERP = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}


def resize_rgb(image_rgb: np.ndarray, spec: Preprocess) -> np.ndarray:
    """Resize an HxWx3 uint8 RGB image to the network size (no letterbox: SSD is trained on stretched images)."""
    if image_rgb.shape[0] == spec.height and image_rgb.shape[1] == spec.width:
        return image_rgb
    return cv2.resize(image_rgb, (spec.width, spec.height), interpolation=_INTERP[spec.interpolation])


def resize_batch(images_rgb: Sequence[np.ndarray], spec: Preprocess) -> np.ndarray:
    """HxWx3 uint8 RGB images of any sizes → one [N, H, W, 3] uint8 batch at the network size, each image resized
    straight into its row (`cv2.resize(..., dst=...)`: no per-image array and no stacking copy)."""
    batch = np.empty((len(images_rgb), spec.height, spec.width, 3), dtype=np.uint8)
    for row, image in zip(batch, images_rgb):
        if image.shape[0] == spec.height and image.shape[1] == spec.width:
            row[...] = image
        else:
            cv2.resize(image, (spec.width, spec.height), dst=row, interpolation=_INTERP[spec.interpolation])
    return batch


def normalization_constants(spec: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) per channel in float32: normalized = x * scale - shift, i.e. (x / 255 - mean) / std. The
    in-graph preprocess of OpenVINO and ONNX exports uses these same constants and operations."""
    std = np.asarray(spec.std, dtype=np.float32)
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    shift = (np.asarray(spec.mean, dtype=np.float32) / std).astype(np.float32)
    return scale, shift


def normalize_batch(images_rgb: np.ndarray, spec: Preprocess) -> np.ndarray:
    """[N, H, W, 3] uint8 RGB at network size → [N, 3, H, W] float32 normalized ((x/255 - mean) / std).

    The layout change happens on the uint8 pixels (a quarter of the bytes) and the arithmetic then runs per
    contiguous channel plane: 8x faster at 300x300 than float conversion and a 3-wide broadcast in NHWC, same values.
    """
    x = images_rgb[..., ::-1] if spec.channel_order == "BGR" else images_rgb
    planes = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # uint8 NCHW
    scale, shift = normalization_constants(spec)
    out = np.empty(planes.shape, dtype=np.float32)
    np.multiply(planes, scale[None, :, None, None], out=out)
    out -= shift[None, :, None, None]
    return out


def preprocess_images(images_rgb: Sequence[np.ndarray], spec: Preprocess) -> np.ndarray:
    """Decoded RGB uint8 images of any sizes → one normalized NCHW float32 batch."""
    return normalize_batch(resize_batch(images_rgb, spec), spec)
