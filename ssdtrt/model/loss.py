"""Prior matching and the MultiBox loss (Smooth-L1 on positives + cross-entropy with 3:1 hard-negative mining).

Both are vectorized over the batch: ground truth is padded to the largest box count with a validity mask, so there
is no Python loop over images or boxes.

Matching follows both seeds (and ssd.pytorch / torchvision's `SSDMatcher`, `allow_low_quality_matches`):
1. every ground truth is forced onto its best prior, even below the threshold; when two ground truths pick the same
   prior the later one (higher index) wins, as in ssd.pytorch's `for j in ...: best_truth_idx[best_prior_idx[j]] = j`;
2. every other prior whose best IoU is >= `iou_threshold` takes its best ground truth; the rest are background.
IoU is computed against the priors converted to xyxy (for seed 000 these are its clamped cx, cy, w, h).

Normalisation (documented choice): the summed losses are divided by the number of positives **in the whole batch**
(torchvision / the Caffe SSD), not per image. Images without objects contribute no positives and mine no negatives
(3 x 0), so they add nothing; an all-empty batch gives loss 0 (finite, still differentiable). `normalize="image"`
reproduces seed 000 exactly: per-image loss / per-image positives, averaged over all images of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssdtrt.core.boxes import cxcywh_to_xyxy
from ssdtrt.core.codec import encode
from ssdtrt.core.config import VARIANCES


def pad_ground_truth(
    gt_boxes_xyxy: Sequence[torch.Tensor], gt_labels: Sequence[torch.Tensor], device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack ragged per-image ground truth into boxes [N, K, 4], labels [N, K] and a validity mask [N, K].

    K is the largest box count (at least 1). Boxes with zero width or height are marked invalid: they have no IoU
    with any prior and their log-size encoding is undefined.
    """
    n = len(gt_boxes_xyxy)
    if len(gt_labels) != n:
        raise ValueError(f"got {n} box tensors but {len(gt_labels)} label tensors")
    if device is None:
        device = gt_boxes_xyxy[0].device if n else torch.device("cpu")
    counts = [int(b.shape[0]) for b in gt_boxes_xyxy]
    k_max = max([1, *counts])
    boxes = torch.zeros((n, k_max, 4), dtype=torch.float32, device=device)
    labels = torch.zeros((n, k_max), dtype=torch.int64, device=device)
    if n and sum(counts):
        flat_boxes = torch.cat([b.reshape(-1, 4) for b in gt_boxes_xyxy]).to(device=device, dtype=torch.float32)
        flat_labels = torch.cat([lab.reshape(-1) for lab in gt_labels]).to(device=device, dtype=torch.int64)
        counts_t = torch.as_tensor(counts, device=device)
        img_idx = torch.repeat_interleave(torch.arange(n, device=device), counts_t)
        starts = torch.cumsum(counts_t, 0) - counts_t
        slot = torch.arange(flat_boxes.shape[0], device=device) - starts[img_idx]
        boxes[img_idx, slot] = flat_boxes
        labels[img_idx, slot] = flat_labels
    slots = torch.arange(k_max, device=device)
    valid = slots[None, :] < torch.as_tensor(counts, device=device, dtype=torch.int64).reshape(n, 1)
    valid &= (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
    return boxes, labels, valid


def batched_iou_xyxy(boxes_xyxy: torch.Tensor, priors_xyxy: torch.Tensor) -> torch.Tensor:
    """IoU [N, K, P] between padded ground truth [N, K, 4] and priors [P, 4] (all xyxy)."""
    lt = torch.maximum(boxes_xyxy[:, :, None, :2], priors_xyxy[None, None, :, :2])
    rb = torch.minimum(boxes_xyxy[:, :, None, 2:], priors_xyxy[None, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_gt = ((boxes_xyxy[..., 2] - boxes_xyxy[..., 0]) * (boxes_xyxy[..., 3] - boxes_xyxy[..., 1])).clamp(min=0)
    area_pr = ((priors_xyxy[:, 2] - priors_xyxy[:, 0]) * (priors_xyxy[:, 3] - priors_xyxy[:, 1])).clamp(min=0)
    union = area_gt[:, :, None] + area_pr[None, None, :] - inter
    return inter / union.clamp(min=torch.finfo(torch.float32).tiny)


@torch.no_grad()
def match(
    gt_boxes_xyxy: Sequence[torch.Tensor],
    gt_labels: Sequence[torch.Tensor],
    priors_cxcywh: torch.Tensor | np.ndarray,
    iou_threshold: float = 0.5,
    variances: tuple[float, ...] = VARIANCES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training targets for every prior: (loc_targets [N, P, 4] encoded offsets, label_targets [N, P] int64).

    `gt_boxes_xyxy[i]` is [K_i, 4] normalized xyxy, `gt_labels[i]` [K_i] in 1..C-1. Background priors get label 0
    and loc target 0 (the encoding of the prior itself; it is never used by the loss).
    """
    priors = torch.as_tensor(priors_cxcywh, dtype=torch.float32)
    device = gt_boxes_xyxy[0].device if len(gt_boxes_xyxy) else priors.device
    priors = priors.to(device)
    boxes, labels, valid = pad_ground_truth(gt_boxes_xyxy, gt_labels, device)
    n, k_max = labels.shape
    n_priors = priors.shape[0]

    iou = batched_iou_xyxy(boxes, cxcywh_to_xyxy(priors))  # [N, K, P]
    iou = iou.masked_fill(~valid[:, :, None], -1.0)
    best_gt_iou, best_gt_idx = iou.max(dim=1)  # [N, P]: rule 2
    best_prior_idx = iou.argmax(dim=2)  # [N, K]: rule 1 (first prior on ties)

    # Rule 1 with "later ground truth wins": scatter each valid GT's index onto its best prior, keeping the max index.
    gt_index = torch.arange(k_max, device=device).expand(n, k_max)
    forced_gt = torch.full((n, n_priors), -1, dtype=torch.int64, device=device)
    forced_gt.scatter_reduce_(1, best_prior_idx, torch.where(valid, gt_index, -1), reduce="amax", include_self=True)
    forced = forced_gt >= 0

    matched_gt = torch.where(forced, forced_gt, best_gt_idx)  # [N, P]
    positive = forced | (best_gt_iou >= iou_threshold)
    label_targets = torch.where(positive, labels.gather(1, matched_gt), torch.zeros_like(matched_gt))
    matched_boxes = boxes.gather(1, matched_gt[..., None].expand(n, n_priors, 4))  # [N, P, 4]
    # Background priors encode themselves (offset 0) so no log(0) appears for padded / unmatched slots.
    matched_boxes = torch.where(positive[..., None], matched_boxes, cxcywh_to_xyxy(priors).expand(n, n_priors, 4))
    loc_targets = encode(matched_boxes, priors, variances)
    loc_targets = torch.where(positive[..., None], loc_targets, torch.zeros_like(loc_targets))
    return loc_targets, label_targets


def hard_negative_mask(conf_loss: torch.Tensor, positive: torch.Tensor, neg_pos_ratio: float) -> torch.Tensor:
    """Negatives [N, P] to train on: per image the `neg_pos_ratio * num_pos` background priors of highest loss.

    Seed 000's double-sort rank trick, with positives ranked last and the count clamped to P - num_pos, so a positive
    is never also mined as a negative. Stable sorts make ties deterministic (lower prior index first).
    """
    n_priors = conf_loss.shape[1]
    neg_loss = conf_loss.detach().masked_fill(positive, float("-inf"))
    order = neg_loss.sort(dim=1, descending=True, stable=True).indices
    rank = order.sort(dim=1, stable=True).indices
    num_pos = positive.sum(dim=1, keepdim=True)
    num_neg = torch.minimum((neg_pos_ratio * num_pos).long(), n_priors - num_pos)
    return rank < num_neg


class MultiBoxLoss(nn.Module):
    """SSD loss: Smooth-L1 (beta 1, summed over 4 offsets) on positives + softmax CE on positives and mined negatives.

    forward(locs [N, P, 4], logits [N, P, C], gt_boxes list[[K_i, 4] normalized xyxy], gt_labels list[[K_i]])
    -> {"loss", "loc_loss", "conf_loss", "num_pos"}. See the module docstring for the normalisation.
    """

    def __init__(
        self,
        priors_cxcywh: torch.Tensor | np.ndarray,
        variances: tuple[float, ...] = VARIANCES,
        iou_threshold: float = 0.5,
        neg_pos_ratio: float = 3.0,
        normalize: Literal["batch", "image"] = "batch",
    ) -> None:
        super().__init__()
        if normalize not in ("batch", "image"):
            raise ValueError(f"normalize must be 'batch' or 'image', not {normalize!r}")
        self.register_buffer("priors", torch.as_tensor(priors_cxcywh, dtype=torch.float32), persistent=False)
        self.variances = tuple(float(v) for v in variances)
        self.iou_threshold = float(iou_threshold)
        self.neg_pos_ratio = float(neg_pos_ratio)
        self.normalize = normalize

    def forward(
        self,
        locs: torch.Tensor,
        logits: torch.Tensor,
        gt_boxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        device = locs.device
        gt_boxes = [b.to(device) for b in gt_boxes]
        gt_labels = [lab.to(device) for lab in gt_labels]
        loc_t, label_t = match(gt_boxes, gt_labels, self.priors.to(device), self.iou_threshold, self.variances)
        return self.loss_from_targets(locs, logits, loc_t, label_t)

    def loss_from_targets(
        self, locs: torch.Tensor, logits: torch.Tensor, loc_targets: torch.Tensor, label_targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The loss given already-matched targets (float32 math even under autocast)."""
        n, n_priors, n_cls = logits.shape
        locs, logits = locs.float(), logits.float()
        positive = label_targets > 0  # [N, P]
        pos_per_img = positive.sum(dim=1)

        loc_per_prior = F.smooth_l1_loss(locs, loc_targets, reduction="none", beta=1.0).sum(dim=-1)
        loc_per_img = (loc_per_prior * positive).sum(dim=1)

        ce = F.cross_entropy(logits.reshape(-1, n_cls), label_targets.reshape(-1), reduction="none").view(n, n_priors)
        negative = hard_negative_mask(ce, positive, self.neg_pos_ratio)
        conf_per_img = (ce * (positive | negative)).sum(dim=1)

        if self.normalize == "batch":
            denom = pos_per_img.sum().clamp(min=1).float()
            loc_loss, conf_loss = loc_per_img.sum() / denom, conf_per_img.sum() / denom
        else:  # seed 000: per image, images without positives count as 0 in the batch mean
            has_pos = (pos_per_img > 0).float()
            denom = pos_per_img.float().clamp(min=1e-6)
            loc_loss = (loc_per_img * has_pos / denom).mean()
            conf_loss = (conf_per_img * has_pos / denom).mean()
        return {
            "loss": loc_loss + conf_loss,
            "loc_loss": loc_loss,
            "conf_loss": conf_loss,
            "num_pos": pos_per_img.sum(),
        }
