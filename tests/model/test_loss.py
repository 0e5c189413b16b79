"""Matching and MultiBox loss against hand-computed values, torchvision's SSDMatcher and seed 000's Loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ssdtrt.core.codec import encode
from ssdtrt.model.loss import MultiBoxLoss, match

# Six priors (cx, cy, w, h): four quadrants, the whole image, and a small box inside the top-left quadrant.
PRIORS = torch.tensor(
    [
        [0.25, 0.25, 0.5, 0.5],  # p0 xyxy (0, 0, .5, .5)
        [0.75, 0.25, 0.5, 0.5],  # p1 (.5, 0, 1, .5)
        [0.25, 0.75, 0.5, 0.5],  # p2 (0, .5, .5, 1)
        [0.75, 0.75, 0.5, 0.5],  # p3 (.5, .5, 1, 1)
        [0.5, 0.5, 1.0, 1.0],  # p4 (0, 0, 1, 1)
        [0.3, 0.3, 0.4, 0.4],  # p5 (.1, .1, .5, .5)
    ]
)
GT_A = [0.0, 0.0, 0.5, 0.5]  # IoU: p0 1.0, p4 .25, p5 .64 -> p0 (best) and p5 (>= .5)
GT_B = [0.55, 0.55, 0.95, 0.95]  # IoU: p3 .64, p4 .16 -> p3
GT_C = [0.9, 0.0, 1.0, 0.1]  # IoU: p1 .04, p4 .01 -> p1 forced although far below .5


def _tiny_batch() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    boxes = [torch.tensor([GT_A, GT_B, GT_C]), torch.tensor([GT_C]), torch.zeros((0, 4))]
    labels = [torch.tensor([1, 2, 3]), torch.tensor([2]), torch.zeros((0,), dtype=torch.int64)]
    return boxes, labels


def test_match_hand_computed() -> None:
    boxes, labels = _tiny_batch()
    loc_t, label_t = match(boxes, labels, PRIORS)
    assert label_t.dtype == torch.int64 and loc_t.shape == (3, 6, 4)
    assert label_t.tolist() == [[1, 3, 0, 2, 0, 1], [0, 2, 0, 0, 0, 0], [0] * 6]
    g = math.log(0.5 / 0.4) / 0.2  # 1.1157
    expected0 = [
        [0, 0, 0, 0],  # p0 <- A (identical box)
        [0.2 / 0.05, -0.2 / 0.05, math.log(0.2) / 0.2, math.log(0.2) / 0.2],  # p1 <- C: (4, -4, -8.05, -8.05)
        [0, 0, 0, 0],
        [0, 0, math.log(0.8) / 0.2, math.log(0.8) / 0.2],  # p3 <- B
        [0, 0, 0, 0],
        [-0.05 / 0.04, -0.05 / 0.04, g, g],  # p5 <- A: (-1.25, -1.25, 1.116, 1.116)
    ]
    torch.testing.assert_close(loc_t[0], torch.tensor(expected0), atol=1e-5, rtol=0)
    torch.testing.assert_close(loc_t[1, 1], torch.tensor(expected0[1]), atol=1e-5, rtol=0)
    assert loc_t[2].abs().max() == 0


def test_match_later_ground_truth_wins_shared_best_prior() -> None:
    boxes = [torch.tensor([GT_B, GT_B, [0.6, 0.6, 0.9, 0.9]])]  # all three pick p3
    loc_t, label_t = match(boxes, [torch.tensor([1, 2, 3])], PRIORS)
    assert label_t[0].tolist() == [0, 0, 0, 3, 0, 0]


def test_match_threshold_is_inclusive() -> None:
    # Box (0, 0, .25, .5) has IoU exactly 0.5 with p0 (dyadic numbers: exact in float32); p6 == box is its best.
    box = torch.tensor([[0.0, 0.0, 0.25, 0.5]])
    priors = torch.cat([PRIORS, torch.tensor([[0.125, 0.25, 0.25, 0.5]])])
    _, label_t = match([box], [torch.tensor([4])], priors)
    assert label_t[0].tolist() == [4, 0, 0, 0, 0, 0, 4]
    _, label_t = match([box], [torch.tensor([4])], priors, iou_threshold=0.5001)
    assert label_t[0].tolist() == [0, 0, 0, 0, 0, 0, 4]


def _torchvision_reference(boxes: torch.Tensor, labels: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    from torchvision.models.detection._utils import SSDMatcher
    from torchvision.ops import box_iou

    from ssdtrt.core.boxes import cxcywh_to_xyxy

    if boxes.shape[0] == 0:
        return torch.zeros(priors.shape[0], dtype=torch.int64)
    idx = SSDMatcher(0.5)(box_iou(boxes, cxcywh_to_xyxy(priors)))
    return torch.where(idx >= 0, labels[idx.clamp(min=0)], torch.zeros_like(idx))


def test_match_equals_torchvision_ssdmatcher_random() -> None:
    from ssdtrt.core.priors import default_boxes

    priors = torch.from_numpy(default_boxes("ssd-small"))
    gen = torch.Generator().manual_seed(0)
    boxes, labels = [], []
    for k in (0, 1, 3, 7, 12):
        xy = torch.rand(k, 2, generator=gen) * 0.7
        wh = torch.rand(k, 2, generator=gen) * 0.28 + 0.02
        boxes.append(torch.cat([xy, xy + wh], 1))
        labels.append(torch.randint(1, 7, (k,), generator=gen))
    loc_t, label_t = match(boxes, labels, priors)
    for i in range(len(boxes)):
        assert torch.equal(label_t[i], _torchvision_reference(boxes[i], labels[i], priors)), i
        assert torch.isfinite(loc_t[i]).all()
    # positives decode back to their ground truth: the box with the highest IoU for each positive prior
    from ssdtrt.core.codec import decode

    dec = decode(loc_t[4], priors)[label_t[4] > 0]
    d = torch.cdist(dec, boxes[4]).min(dim=1).values
    assert d.max() < 1e-5


def _np_softmax_ce(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    m = logits.max(-1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(-1)) + m[..., 0]
    return lse - np.take_along_axis(logits, labels[..., None], -1)[..., 0]


def _np_smooth_l1(d: np.ndarray) -> np.ndarray:
    a = np.abs(d)
    return np.where(a < 1, 0.5 * a * a, a - 0.5)


def test_loss_hand_computed_tiny_case() -> None:
    boxes, labels = _tiny_batch()
    rng = np.random.default_rng(3)
    locs = rng.normal(size=(3, 6, 4)).astype(np.float32)
    logits = rng.normal(size=(3, 6, 4)).astype(np.float32) * 2
    out = MultiBoxLoss(PRIORS)(torch.from_numpy(locs), torch.from_numpy(logits), boxes, labels)

    # Independent numpy reference with the targets worked out by hand above.
    lab = np.array([[1, 3, 0, 2, 0, 1], [0, 2, 0, 0, 0, 0], [0] * 6])
    g = math.log(1.25) / 0.2
    tgt = np.zeros((3, 6, 4))
    tgt[0, 1] = tgt[1, 1] = [4, -4, math.log(0.2) / 0.2, math.log(0.2) / 0.2]
    tgt[0, 3] = [0, 0, math.log(0.8) / 0.2, math.log(0.8) / 0.2]
    tgt[0, 5] = [-1.25, -1.25, g, g]
    pos = lab > 0
    loc_sum = (_np_smooth_l1(locs - tgt).sum(-1) * pos).sum()
    ce = _np_softmax_ce(logits.astype(np.float64), lab)
    # image 0: 4 positives -> min(12, 2) = 2 negatives = both background priors; image 1: 1 positive -> the 3
    # background priors with the highest CE out of 5; image 2: no positives -> no negatives.
    neg1 = [p for p in np.argsort(-ce[1]) if lab[1, p] == 0][:3]
    conf_sum = ce[0].sum() + ce[1, 1] + ce[1, neg1].sum()
    n_pos = 5
    assert int(out["num_pos"]) == n_pos
    np.testing.assert_allclose(out["loc_loss"].item(), loc_sum / n_pos, rtol=1e-5)
    np.testing.assert_allclose(out["conf_loss"].item(), conf_sum / n_pos, rtol=1e-5)
    np.testing.assert_allclose(out["loss"].item(), (loc_sum + conf_sum) / n_pos, rtol=1e-5)


def test_loss_all_empty_batch_is_finite_and_differentiable() -> None:
    locs = torch.randn(2, 6, 4, requires_grad=True)
    logits = torch.randn(2, 6, 3, requires_grad=True)
    empty_b, empty_l = torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.int64)
    out = MultiBoxLoss(PRIORS)(locs, logits, [empty_b, empty_b], [empty_l, empty_l])
    assert out["loss"].item() == 0.0 and int(out["num_pos"]) == 0
    out["loss"].backward()
    assert torch.isfinite(locs.grad).all() and torch.isfinite(logits.grad).all()


def test_loss_gradient_only_on_positives_and_mined() -> None:
    boxes, labels = _tiny_batch()
    locs = torch.randn(3, 6, 4, requires_grad=True)
    logits = torch.randn(3, 6, 4, requires_grad=True)
    MultiBoxLoss(PRIORS)(locs, logits, boxes, labels)["loss"].backward()
    loc_rows = locs.grad.abs().sum(-1) > 0
    assert loc_rows.tolist() == [[True, True, False, True, False, True], [False, True] + [False] * 4, [False] * 6]
    conf_rows = logits.grad.abs().sum(-1) > 0
    assert conf_rows[0].all() and conf_rows[1].sum() == 4 and not conf_rows[2].any()


class _Seed000Loss(nn.Module):
    """Seed 000's Loss, transcribed from the seed text (layouts N x 4 x P and N x C x P, gloc in cx, cy, w, h)."""

    def __init__(self, dboxes_xywh: torch.Tensor) -> None:
        super().__init__()
        self.scale_xy = 1.0 / 0.1
        self.scale_wh = 1.0 / 0.2
        self.location_loss = nn.SmoothL1Loss(reduction="none")
        self.dboxes = nn.Parameter(dboxes_xywh.transpose(0, 1).unsqueeze(dim=0), requires_grad=False)
        self.confidence_loss = nn.CrossEntropyLoss(reduction="none")

    def _location_vec(self, loc: torch.Tensor) -> torch.Tensor:
        gxy = self.scale_xy * (loc[:, :2, :] - self.dboxes[:, :2, :]) / self.dboxes[:, 2:, :]
        gwh = self.scale_wh * (loc[:, 2:, :] / self.dboxes[:, 2:, :]).log()
        return torch.cat((gxy, gwh), dim=1).contiguous()

    def forward(self, ploc, plabel, gloc, glabel):  # noqa: ANN001, ANN201 - verbatim
        mask = torch.gt(glabel, 0)
        pos_num = mask.sum(dim=1)
        vec_gd = self._location_vec(gloc)
        loc_loss = self.location_loss(ploc, vec_gd).sum(dim=1)
        loc_loss = (mask.float() * loc_loss).sum(dim=1)
        con = self.confidence_loss(plabel, glabel)
        con_neg = con.clone()
        con_neg[mask] = 0.0
        _, con_idx = con_neg.sort(dim=1, descending=True)
        _, con_rank = con_idx.sort(dim=1)
        neg_num = torch.clamp(3 * pos_num, max=mask.size(1)).unsqueeze(-1)
        neg_mask = torch.lt(con_rank, neg_num)
        con_loss = (con * (mask.float() + neg_mask.float())).sum(dim=1)
        total_loss = loc_loss + con_loss
        num_mask = torch.gt(pos_num, 0).float()
        pos_num = pos_num.float().clamp(min=1e-6)
        return (total_loss * num_mask / pos_num).mean(dim=0)


@pytest.mark.parametrize("normalize", ["image", "batch"])
def test_loss_equals_seed000_formula_random(normalize: str) -> None:
    from ssdtrt.core.boxes import xyxy_to_cxcywh
    from ssdtrt.core.priors import default_boxes

    priors = torch.from_numpy(default_boxes("ssd-small"))
    n, p, c = 4, priors.shape[0], 7
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(1, c, (n, p), generator=gen) * (torch.rand(n, p, generator=gen) < 0.02)
    labels[3] = 0  # one image without objects
    xy = torch.rand(n, p, 2, generator=gen) * 0.6
    gt_xyxy = torch.cat([xy, xy + 0.05 + 0.3 * torch.rand(n, p, 2, generator=gen)], -1)
    locs = torch.randn(n, p, 4, generator=gen)
    logits = torch.randn(n, p, c, generator=gen) * 3

    seed = _Seed000Loss(priors)(
        locs.transpose(1, 2), logits.transpose(1, 2), xyxy_to_cxcywh(gt_xyxy).transpose(1, 2), labels
    )
    loss = MultiBoxLoss(priors, normalize=normalize)
    ours = loss.loss_from_targets(locs, logits, encode(gt_xyxy, priors), labels)["loss"]
    if normalize == "image":
        torch.testing.assert_close(ours, seed, rtol=1e-5, atol=1e-5)
    else:  # sum over images / total positives == the positive-weighted mean of the seed's per-image losses
        pos = (labels > 0).sum(1).float()
        per_img = torch.stack(
            [
                _Seed000Loss(priors)(
                    locs[i : i + 1].transpose(1, 2),
                    logits[i : i + 1].transpose(1, 2),
                    xyxy_to_cxcywh(gt_xyxy[i : i + 1]).transpose(1, 2),
                    labels[i : i + 1],
                )
                for i in range(n)
            ]
        )
        torch.testing.assert_close(ours, (per_img * pos).sum() / pos.sum(), rtol=1e-5, atol=1e-5)
