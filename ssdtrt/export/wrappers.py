"""Torch modules that give the exported graphs their outputs: `raw` heads or `decoded` boxes + softmax scores.

`decoded` folds the priors in as a constant: boxes are xyxy, normalized and clipped to [0, 1] (exactly the boxes
`ssdtrt.postprocess.host_torch` works on), scores are the softmax over all C classes (column 0 = background).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ssdtrt.core.codec import decode


class RawHeads(nn.Module):
    """`images → (locs [N, P, 4], logits [N, P, C])`: the SSD unchanged (a named wrapper for symmetry)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        locs, logits = self.model(images)
        return locs, logits


class DecodedHeads(nn.Module):
    """`images → (boxes_xyxy [N, P, 4] in [0, 1], scores [N, P, C] softmax)` with the priors as a constant."""

    def __init__(self, model: nn.Module, priors_cxcywh: np.ndarray, variances: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.variances = tuple(float(v) for v in variances)
        self.register_buffer("priors", torch.as_tensor(np.asarray(priors_cxcywh, dtype=np.float32)), persistent=False)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        locs, logits = self.model(images)
        boxes_xyxy = decode(locs, self.priors, self.variances).clamp(0.0, 1.0)
        return boxes_xyxy, torch.softmax(logits, dim=-1)
