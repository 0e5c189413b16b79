"""Box math on numpy arrays or torch tensors (same code path for both; torch is never imported here).

The format is in every name: `xyxy` = (x1, y1, x2, y2), `cxcywh` = (center x, center y, width, height).
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

Array = TypeVar("Array", bound=Any)  # np.ndarray or torch.Tensor


def _stack(parts: list[Any], like: Any) -> Any:
    if isinstance(like, np.ndarray):
        return np.stack(parts, axis=-1)
    import torch  # `like` is a torch tensor, so torch is already loaded

    return torch.stack(parts, dim=-1)


def cxcywh_to_xyxy(boxes_cxcywh: Array) -> Array:
    cx, cy, w, h = (boxes_cxcywh[..., i] for i in range(4))
    return _stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], boxes_cxcywh)


def xyxy_to_cxcywh(boxes_xyxy: Array) -> Array:
    x1, y1, x2, y2 = (boxes_xyxy[..., i] for i in range(4))
    return _stack([(x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1], boxes_xyxy)


def box_area_xyxy(boxes_xyxy: np.ndarray) -> np.ndarray:
    return np.clip(boxes_xyxy[..., 2] - boxes_xyxy[..., 0], 0, None) * np.clip(
        boxes_xyxy[..., 3] - boxes_xyxy[..., 1], 0, None
    )


def box_iou_xyxy(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """Pairwise IoU [..., A, B] of two box sets (numpy; torch code uses torchvision.ops.box_iou)."""
    lt = np.maximum(a_xyxy[..., :, None, :2], b_xyxy[..., None, :, :2])
    rb = np.minimum(a_xyxy[..., :, None, 2:], b_xyxy[..., None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area_xyxy(a_xyxy)[..., :, None] + box_area_xyxy(b_xyxy)[..., None, :] - inter
    return inter / np.maximum(union, np.finfo(np.float32).tiny)
