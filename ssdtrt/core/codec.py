"""Encode ground truth against priors / decode network offsets, with the seeds' variances (0.1, 0.1, 0.2, 0.2).

Works on numpy arrays and torch tensors alike (the array's own namespace is used; torch is never imported here
unless the input already is a torch tensor).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ssdtrt.core.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh
from ssdtrt.core.config import VARIANCES

#: exp() argument ceiling for width/height, as torchvision's BoxCoder (log(1000/16)); keeps fp16 finite.
WH_EXP_CLAMP = math.log(1000.0 / 16)


def _like(values: tuple[float, ...], like: Any) -> Any:
    """A constant vector in the namespace, dtype and device of `like`."""
    if isinstance(like, np.ndarray):
        return np.asarray(values, dtype=like.dtype)
    return like.new_tensor(values)


def _cat_last(parts: list[Any]) -> Any:
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts, axis=-1)
    import torch  # parts are torch tensors, so torch is already loaded

    return torch.cat(parts, dim=-1)


def encode(boxes_xyxy: Any, priors_cxcywh: Any, variances: tuple[float, ...] = VARIANCES) -> Any:
    """Offsets [..., 4] that `decode` maps back to `boxes_xyxy` (matched boxes, same shape as the priors)."""
    g = xyxy_to_cxcywh(boxes_xyxy)
    p = priors_cxcywh
    txy = (g[..., :2] - p[..., :2]) / (p[..., 2:] * _like(variances[:2], g))
    ratio = g[..., 2:] / p[..., 2:]
    twh = (np.log(ratio) if isinstance(ratio, np.ndarray) else ratio.log()) / _like(variances[2:], g)
    return _cat_last([txy, twh])


def decode(locs: Any, priors_cxcywh: Any, variances: tuple[float, ...] = VARIANCES) -> Any:
    """Boxes [..., P, 4] xyxy (normalized, unclipped) from offsets `locs` [..., P, 4] and priors [P, 4]."""
    p = priors_cxcywh
    cxcy = p[..., :2] + locs[..., :2] * _like(variances[:2], locs) * p[..., 2:]
    twh = locs[..., 2:] * _like(variances[2:], locs)
    if isinstance(twh, np.ndarray):
        wh = np.exp(np.minimum(twh, WH_EXP_CLAMP)) * p[..., 2:]
    else:
        wh = twh.clamp(max=WH_EXP_CLAMP).exp() * p[..., 2:]
    return cxcywh_to_xyxy(_cat_last([cxcy, wh]))
