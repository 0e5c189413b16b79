"""Detector-like classification heads for a random-weight model, so that latency benchmarks see a realistic load.

Plain random heads put almost every (prior, class) score above the score threshold (random SSD300-ResNet50:
~83 000 candidates per image at 0.01, background probability 0.003), which turns the postprocess of a latency
benchmark into a stress test no trained detector produces. A trained head is mostly background with a few hundred
to a few thousand confident scores per image. `calibrate_score_prior` keeps the random backbone and box heads and
rescales each classification head to unit-variance logits, then raises the background logit (by bisection on the
given images) until about `candidates_per_image` foreground scores pass the score threshold — the same idea as the
focal-loss prior bias of RetinaNet, solved for a count instead of a probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ssdtrt.model.ssd import SSD, _flatten


@dataclass(frozen=True)
class ScorePrior:
    """What `calibrate_score_prior` did (recorded in the checkpoint)."""

    background_bias: float
    candidates_per_image: float  # mean over the calibration images, at `score_threshold`
    score_threshold: float


def _count_candidates(logits: Tensor, bias: float, score_threshold: float) -> float:
    """Mean number of foreground scores > threshold per image with `bias` added to the background logit."""
    shifted = logits.clone()
    shifted[..., 0] += bias
    probs = shifted.softmax(-1)[..., 1:]
    return float((probs > score_threshold).sum(dim=(1, 2)).double().mean())


@torch.no_grad()
def calibrate_score_prior(
    model: SSD, images_nchw: Tensor, candidates_per_image: float, score_threshold: float | None = None
) -> ScorePrior:
    """Rescale `model.conf` in place so ~`candidates_per_image` scores per image pass `score_threshold`.

    images_nchw: a few normalized network inputs (the count is matched on them, mean over images).
    score_threshold: default the preset's postprocess threshold.
    """
    if candidates_per_image <= 0:
        raise ValueError(f"candidates_per_image must be > 0, got {candidates_per_image}")
    threshold = float(model.spec.postprocess.score_threshold if score_threshold is None else score_threshold)
    model.eval()
    maps = model.backbone(images_nchw)
    k = model.num_classes
    for feature, head in zip(maps, model.conf):
        head.bias.zero_()
        std = float(head(feature).std())
        if std > 0:
            head.weight.div_(std)  # unit-variance logits: the background bias alone sets the score distribution
    logits = torch.cat([_flatten(head(f), k) for f, head in zip(maps, model.conf)], 1)  # [N, P, C], as SSD.forward
    lo, hi = 0.0, 64.0
    if _count_candidates(logits, hi, threshold) > candidates_per_image:
        raise ValueError(f"cannot bring the candidates down to {candidates_per_image} per image")
    for _ in range(40):  # bisection: the count falls monotonically as the background bias grows
        mid = (lo + hi) / 2
        if _count_candidates(logits, mid, threshold) > candidates_per_image:
            lo = mid
        else:
            hi = mid
    for head in model.conf:
        head.bias.zero_()
        head.bias[0::k] = hi  # channel a*K + 0 is anchor a's background (see ssd._flatten)
    return ScorePrior(hi, _count_candidates(logits, hi, threshold), threshold)
