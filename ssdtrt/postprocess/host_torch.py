"""Decode + per-class NMS for a whole batch at once, in torch (CPU or GPU). No Python loop over classes or boxes.

Semantics (shared with the numpy path in `postprocess_numpy` and the NMS-in-graph ONNX export):
softmax → decode → clip to [0, 1] → per class keep scores > score_threshold, then that class's best
`topk_candidates` (None = all; `candidates_per_class`, when set, caps it further) → drop boxes narrower or shorter
than `min_size` → per-class NMS (IoU > iou_threshold suppresses) → the best `max_detections` per image, sorted by
score (descending).
Candidates enter NMS in (image, class, per-class score rank) order and ties are broken stably in that order.

Row pre-filter (as in `postprocess_numpy`): a class probability is exp(l_c - max_l) / sum with sum >= 1, so
p_c > thr needs l_c - max_l > log(thr). One max over the classes finds the (image, prior) rows where some foreground
class can pass (with a small log-space margin, so the filter is conservative); softmax, decode and the exact threshold
then run on those rows only, which gives the same candidates, values and order as the dense path. The dense path runs
when the filter does not apply (threshold <= 0), when most rows pass, or when a per-class top-k cap would bind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ssdtrt.core.config import VARIANCES, PostprocessSpec, per_class_cap
from ssdtrt.core.detections import Detections
from ssdtrt.postprocess.settings import ROW_FILTER_LOG_MARGIN, SPARSE_MAX_ROW_SHARE

if TYPE_CHECKING:
    import torch


def postprocess(
    locs: torch.Tensor,
    logits: torch.Tensor,
    priors: torch.Tensor | np.ndarray,
    *,
    score_threshold: float = 0.01,
    iou_threshold: float = 0.45,
    topk_candidates: int | None = 400,
    max_detections: int = 200,
    min_size: float = 0.0,
    candidates_per_class: int | None = None,
    variances: tuple[float, ...] = VARIANCES,
    scores_are_probs: bool = False,
    boxes_are_decoded: bool = False,
) -> list[Detections]:
    """Detections per image from head outputs `locs [N, P, 4]` and `logits [N, P, C]` (class 0 = background).

    `priors` is [P, 4] (cx, cy, w, h). With `boxes_are_decoded` / `scores_are_probs` the inputs are the outputs of
    a `decoded` export (xyxy boxes, softmax scores) and those steps are skipped. `candidates_per_class` caps each
    class's candidates on top of `topk_candidates` (the cap an `nms` export's manifest records).
    """
    import torch

    topk_candidates = per_class_cap(topk_candidates, candidates_per_class)

    if locs.ndim != 3 or logits.ndim != 3 or locs.shape[:2] != logits.shape[:2] or locs.shape[-1] != 4:
        raise ValueError(f"expected locs [N, P, 4] and logits [N, P, C], got {tuple(locs.shape)} and {tuple(logits.shape)}")
    scores = logits.float()
    rows = _rows_that_can_pass(scores, score_threshold, scores_are_probs)
    if rows is not None:
        sparse = _select_sparse(
            locs, scores, priors, rows, score_threshold, iou_threshold, topk_candidates, max_detections, min_size,
            variances, scores_are_probs, boxes_are_decoded,
        )
        if sparse is not None:
            return sparse
    probs = scores if scores_are_probs else torch.softmax(scores, dim=-1)
    if boxes_are_decoded:
        boxes = locs.float()
    else:
        from ssdtrt.core.codec import decode

        boxes = decode(locs.float(), _priors_tensor(priors, locs.device), variances)
    boxes = boxes.clamp(0.0, 1.0)
    return _select(boxes, probs[..., 1:], score_threshold, iou_threshold, topk_candidates, max_detections, min_size)


def _priors_tensor(priors: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    import torch

    priors_t = torch.as_tensor(np.asarray(priors) if not isinstance(priors, torch.Tensor) else priors)
    return priors_t.to(device=device, dtype=torch.float32)


def _rows_that_can_pass(scores: torch.Tensor, score_threshold: float, scores_are_probs: bool) -> torch.Tensor | None:
    """Flat (image * P + prior) indices (ascending) of the rows where some class can score above the threshold.

    The torch twin of `postprocess_numpy._rows_that_can_pass`: logits pass when best_fg - max(best_fg, background)
    > log(thr) - margin (necessary for a softmax probability > thr, see the module docstring); probabilities pass when
    their best foreground score > thr (exact). None: no pre-filter applies (threshold <= 0, fewer than two classes, an
    empty head, or more than SPARSE_MAX_ROW_SHARE of the rows pass): use the dense path. One device sync (nonzero).
    """
    import torch

    if not score_threshold > 0 or scores.shape[-1] < 2 or scores.numel() == 0:
        return None
    best_fg = scores[..., 1:].amax(dim=-1)
    if scores_are_probs:
        can_pass = best_fg > float(np.float32(score_threshold))
    else:
        best = torch.maximum(scores[..., 0], best_fg)
        can_pass = (best_fg - best) > float(np.float32(np.log(score_threshold) - ROW_FILTER_LOG_MARGIN))
    rows = can_pass.reshape(-1).nonzero().squeeze(1)
    return rows if rows.numel() <= SPARSE_MAX_ROW_SHARE * can_pass.numel() else None


def _select_sparse(
    locs: torch.Tensor,
    scores: torch.Tensor,
    priors: torch.Tensor | np.ndarray,
    rows: torch.Tensor,
    score_threshold: float,
    iou_threshold: float,
    topk_candidates: int | None,
    max_detections: int,
    min_size: float,
    variances: tuple[float, ...],
    scores_are_probs: bool,
    boxes_are_decoded: bool,
) -> list[Detections] | None:
    """`_select` on the pre-filtered rows only (flat image * P + prior indices, ascending), batched over images.

    Softmax, threshold and decode touch the surviving rows instead of all N * P; the softmax of a row and the decode
    of a box are computed exactly as in the dense path, so candidates, values and order are the same. None when a
    per-class top-k cap would bind (the dense path ranks with topk), or for a cap <= 0 (left to the dense path).
    """
    import torch

    n_img, n_pri, n_all = scores.shape
    n_cls = n_all - 1
    if topk_candidates is not None and topk_candidates <= 0:
        return None
    row_scores = scores.reshape(-1, n_all)[rows]
    probs = row_scores if scores_are_probs else torch.softmax(row_scores, dim=-1)
    # nonzero is row-major: (row, class) = (image, prior, class) ascending
    r, cls_idx = (probs[:, 1:] > score_threshold).nonzero(as_tuple=True)
    flat = rows[r]
    img_idx = flat // n_pri
    group = img_idx * n_cls + cls_idx
    if topk_candidates is not None and r.numel() > topk_candidates:
        if int(torch.bincount(group).max()) > topk_candidates:
            return None
    cand_scores = probs[r, cls_idx + 1]
    # (image, class), score descending, ties by prior index: the order the dense uncapped path produces
    order = torch.sort(cand_scores, descending=True, stable=True).indices
    order = order[torch.sort(group[order], stable=True).indices]
    flat, img_idx, cls_idx, cand_scores = flat[order], img_idx[order], cls_idx[order], cand_scores[order]
    cand_locs = locs.reshape(-1, 4)[flat].float()
    if boxes_are_decoded:
        cand_boxes = cand_locs
    else:
        from ssdtrt.core.codec import decode

        cand_priors = _priors_tensor(priors, locs.device)[flat % n_pri]
        cand_boxes = decode(cand_locs, cand_priors, variances)
    cand_boxes = cand_boxes.clamp(0.0, 1.0)
    return _finish(cand_boxes, cand_scores, img_idx, cls_idx, iou_threshold, max_detections, min_size, n_img, n_cls)


def postprocess_spec(
    locs: torch.Tensor, logits: torch.Tensor, priors: Any, spec: PostprocessSpec, **kwargs: Any
) -> list[Detections]:
    """`postprocess` with the settings of a PostprocessSpec (e.g. a preset's defaults)."""
    return postprocess(locs, logits, priors, **spec.as_kwargs(), **kwargs)


def _select(
    boxes_xyxy: torch.Tensor,
    class_scores: torch.Tensor,
    score_threshold: float,
    iou_threshold: float,
    topk_candidates: int | None,
    max_detections: int,
    min_size: float,
) -> list[Detections]:
    """Thresholds, per-class top-k, min size, batched per-class NMS and per-image cap on [N, P, 4] / [N, P, K]."""
    import torch
    from torchvision.ops import batched_nms

    n_img, n_pri, n_cls = class_scores.shape
    scores_ncp = class_scores.transpose(1, 2)  # [N, K, P]
    above = scores_ncp > score_threshold
    capped = topk_candidates is not None and topk_candidates < n_pri
    if capped and above.numel() and int(above.sum(dim=-1).max()) <= topk_candidates:
        capped = False  # no class of any image reaches the cap: ranking the candidates alone is the same (and cheap)
    if capped:
        cand_scores, cand_idx = scores_ncp.topk(topk_candidates, dim=-1, sorted=True)
        keep = cand_scores > score_threshold  # [N, K, k]
        img_idx, cls_idx, rank_idx = keep.nonzero(as_tuple=True)  # (image, class, rank) order
        prior_idx = cand_idx[img_idx, cls_idx, rank_idx]
        cand_scores = cand_scores[img_idx, cls_idx, rank_idx]
    else:  # no per-class cap: threshold first, then rank only the candidates (score descending, ties by prior)
        img_idx, cls_idx, prior_idx = above.nonzero(as_tuple=True)
        cand_scores = scores_ncp[img_idx, cls_idx, prior_idx]
        order = torch.sort(cand_scores, descending=True, stable=True).indices
        order = order[torch.sort((img_idx * n_cls + cls_idx)[order], stable=True).indices]
        img_idx, cls_idx, prior_idx, cand_scores = img_idx[order], cls_idx[order], prior_idx[order], cand_scores[order]
    cand_boxes = boxes_xyxy[img_idx, prior_idx]
    return _finish(cand_boxes, cand_scores, img_idx, cls_idx, iou_threshold, max_detections, min_size, n_img, n_cls)


def _finish(
    cand_boxes: torch.Tensor,
    cand_scores: torch.Tensor,
    img_idx: torch.Tensor,
    cls_idx: torch.Tensor,
    iou_threshold: float,
    max_detections: int,
    min_size: float,
    n_img: int,
    n_cls: int,
) -> list[Detections]:
    """Min size, per-(image, class) NMS and the per-image cap on candidates in (image, class, rank) order."""
    import torch

    if min_size > 0:
        wh = cand_boxes[:, 2:] - cand_boxes[:, :2]
        big = (wh >= min_size).all(dim=1)
        img_idx, cls_idx, cand_boxes, cand_scores = img_idx[big], cls_idx[big], cand_boxes[big], cand_scores[big]
    group = img_idx * n_cls + cls_idx
    kept = _nms_best_first(cand_boxes, cand_scores, group, img_idx, iou_threshold, max_detections, n_img)
    # Deterministic order: score descending, ties by candidate order (batched_nms does not promise stability).
    kept = kept.sort().values
    kept = kept[torch.sort(cand_scores[kept], descending=True, stable=True).indices]
    kept_img = img_idx[kept]
    # Stable sort by image keeps the score order inside each image; then cap each image at max_detections.
    order = torch.sort(kept_img, stable=True).indices
    kept, kept_img = kept[order], kept_img[order]
    counts = torch.bincount(kept_img, minlength=n_img)
    starts = torch.cumsum(counts, 0) - counts
    rank_in_img = torch.arange(kept.numel(), device=kept.device) - starts[kept_img]
    cap = rank_in_img < max_detections
    kept, kept_img = kept[cap], kept_img[cap]
    per_img = torch.bincount(kept_img, minlength=n_img).tolist()
    out_boxes = cand_boxes[kept].split(per_img)
    out_scores = cand_scores[kept].split(per_img)
    out_labels = (cls_idx[kept] + 1).to(torch.int64).split(per_img)
    return [Detections(b, s, lab) for b, s, lab in zip(out_boxes, out_scores, out_labels)]


def _nms_best_first(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    group: torch.Tensor,
    img_idx: torch.Tensor,
    iou_threshold: float,
    max_detections: int,
    n_img: int,
    first_prefix: int = 256,
) -> torch.Tensor:
    """Indices kept by per-group NMS among the candidates that can reach an image's best `max_detections`.

    Same exact prefix argument as `ssdtrt.postprocess.host_numpy.nms_best_first`: candidates are taken in output order
    (image, score descending, ties by candidate position); once an image's prefix holds `max_detections` kept boxes,
    nothing after it can enter the output. The prefix grows ×4 until that holds. One `batched_nms` call per image per round
    (torchvision picks a per-group loop or its coordinate-offset trick by size; float64 keeps offset coordinates
    exact: float32 loses ~1e-3 at offsets in the thousands).
    """
    import torch

    m = scores.numel()
    if m == 0 or max_detections <= 0:
        return torch.zeros(0, dtype=torch.int64, device=scores.device)
    limit = max(4 * int(max_detections), first_prefix)
    if m <= limit:  # every image's prefix is all of it: one round, no ranking needed
        return _batched_nms_per_image(boxes.to(torch.float64), scores.to(torch.float64), group, img_idx, n_img,
                                      iou_threshold)
    order = torch.sort(scores, descending=True, stable=True).indices  # ties keep candidate position
    order = order[torch.sort(img_idx[order], stable=True).indices]
    per_img = torch.bincount(img_idx, minlength=n_img)
    starts = torch.cumsum(per_img, 0) - per_img
    rank = torch.empty(m, dtype=torch.int64, device=scores.device)
    rank[order] = torch.arange(m, device=scores.device) - starts[img_idx[order]]
    boxes64, scores64 = boxes.to(torch.float64), scores.to(torch.float64)
    while True:
        sub = (rank < limit).nonzero(as_tuple=True)[0]
        kept = sub[_batched_nms_per_image(boxes64[sub], scores64[sub], group[sub], img_idx[sub], n_img, iou_threshold)]
        kept_per_img = torch.bincount(img_idx[kept], minlength=n_img)
        if bool(((kept_per_img >= max_detections) | (per_img <= limit)).all()):
            return kept
        limit *= 4


def _batched_nms_per_image(
    boxes: torch.Tensor, scores: torch.Tensor, group: torch.Tensor, img_idx: torch.Tensor, n_img: int,
    iou_threshold: float,
) -> torch.Tensor:
    """`batched_nms` one image at a time (`img_idx` nondecreasing: candidates come image by image).

    Above 1000 boxes (CPU) batched_nms loops over the groups and scans every box for each: on a whole batch that is
    (batch x classes) scans of (batch x candidates), quadratic in the batch size. Per image it is linear in the
    batch, as in torchvision's own SSD postprocess.
    """
    import torch
    from torchvision.ops import batched_nms

    if n_img == 1:
        return batched_nms(boxes, scores, group, iou_threshold)
    parts, start = [], 0
    for count in torch.bincount(img_idx, minlength=n_img).tolist():  # a loop over images, not boxes
        if count:
            end = start + count
            parts.append(batched_nms(boxes[start:end], scores[start:end], group[start:end], iou_threshold) + start)
        start += count
    return torch.cat(parts) if parts else img_idx.new_zeros(0)
