"""Batched torch postprocess vs torchvision's SSD postprocess_detections and seed 000's decode_single_new."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torchvision.ops import batched_nms  # noqa: E402

from ssdtrt.core.boxes import cxcywh_to_xyxy  # noqa: E402
from ssdtrt.postprocess.host_torch import postprocess  # noqa: E402
from ssdtrt.core.priors import default_boxes  # noqa: E402


def canonical(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Rows (score, label, box) sorted so that exact score ties compare equal whatever their order."""
    rows = torch.cat([scores[:, None].double(), labels[:, None].double(), boxes.double()], 1).numpy()
    return rows[np.lexsort(rows.T[::-1])]


def heads(n: int, p: int, c: int, seed: int, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, p, 4, generator=g) * 0.5, torch.randn(n, p, c, generator=g) * scale


@pytest.mark.parametrize("batch", [1, 3])
def test_equals_torchvision_postprocess_detections(batch: int) -> None:
    from torchvision.models.detection import ssd300_vgg16

    model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21).eval()
    priors = default_boxes("ssd300-vgg16")
    locs, logits = heads(batch, 8732, 21, seed=batch)
    anchors = [cxcywh_to_xyxy(torch.from_numpy(priors)) * 300] * batch
    ref = model.postprocess_detections({"bbox_regression": locs, "cls_logits": logits}, anchors, [(300, 300)] * batch)
    ours = postprocess(locs, logits, priors)  # torchvision's settings are our defaults
    assert len(ours) == batch
    for r, o in zip(ref, ours):
        assert len(o) == len(r["boxes"]) == 200
        assert torch.all(o.scores[:-1] >= o.scores[1:]), "sorted by score"
        np.testing.assert_allclose(
            canonical(o.boxes * 300, o.scores, o.labels), canonical(r["boxes"], r["scores"], r["labels"]), atol=1e-4
        )


def seed000_decode_single_new(bboxes_in, scores_in, criteria: float, num_output: int):  # noqa: ANN001
    """Seed 000's PostProcess.decode_single_new, transcribed (boxes already decoded to ltrb, scores softmaxed)."""
    num_classes = scores_in.shape[-1]
    bboxes_in = bboxes_in.clamp(min=0, max=1)
    bboxes_in = bboxes_in.repeat(1, num_classes).reshape(scores_in.shape[0], -1, 4)
    labels = torch.arange(num_classes).view(1, -1).expand_as(scores_in)
    bboxes_in, scores_in, labels = bboxes_in[:, 1:, :], scores_in[:, 1:], labels[:, 1:]
    bboxes_in, scores_in, labels = bboxes_in.reshape(-1, 4), scores_in.reshape(-1), labels.reshape(-1)
    inds = torch.nonzero(scores_in > 0.05, as_tuple=False).squeeze(1)
    bboxes_in, scores_in, labels = bboxes_in[inds, :], scores_in[inds], labels[inds]
    ws, hs = bboxes_in[:, 2] - bboxes_in[:, 0], bboxes_in[:, 3] - bboxes_in[:, 1]
    keep = ((ws >= 1 / 300) & (hs >= 1 / 300)).nonzero(as_tuple=False).squeeze(1)
    bboxes_in, scores_in, labels = bboxes_in[keep], scores_in[keep], labels[keep]
    keep = batched_nms(bboxes_in, scores_in, labels, iou_threshold=criteria)[:num_output]
    return bboxes_in[keep, :], labels[keep], scores_in[keep]


def seed000_scale_back(locs: torch.Tensor, priors: np.ndarray) -> torch.Tensor:
    """Seed 000's scale_back_batch box part: xy * 0.1 * wh_prior + xy_prior, exp(wh * 0.2) * wh_prior, to ltrb."""
    p = torch.from_numpy(priors)[None]
    xy = 0.1 * locs[..., :2] * p[..., 2:] + p[..., :2]
    wh = (0.2 * locs[..., 2:]).exp() * p[..., 2:]
    return torch.cat([xy - 0.5 * wh, xy + 0.5 * wh], -1)


def test_equals_seed000_decode_single_new() -> None:
    priors = default_boxes("ssd300-resnet50")
    locs, logits = heads(2, 8732, 81, seed=7, scale=2.5)
    ours = postprocess(
        locs, logits, priors, score_threshold=0.05, iou_threshold=0.5, topk_candidates=None, max_detections=100,
        min_size=1 / 300,
    )
    boxes = seed000_scale_back(locs, priors)
    probs = torch.softmax(logits, -1)
    for i, o in enumerate(ours):
        rb, rl, rs = seed000_decode_single_new(boxes[i], probs[i], 0.5, 100)
        assert len(o) == len(rb) > 0
        np.testing.assert_allclose(canonical(o.boxes, o.scores, o.labels), canonical(rb, rs, rl), atol=1e-5)


def test_empty_images_and_labels_range() -> None:
    priors = default_boxes("ssd-small")
    locs, logits = heads(3, len(priors), 7, seed=1)
    logits[1, :, 0] = 50.0  # image 1: background everywhere → no detections
    out = postprocess(locs, logits, priors, score_threshold=0.2, max_detections=10)
    assert [len(d) for d in out] == [10, 0, 10]
    for d in out:
        assert d.labels.dtype == torch.int64 and (len(d) == 0 or (d.labels.min() >= 1 and d.labels.max() <= 6))
        assert d.boxes.shape == (len(d), 4)
        assert bool(((d.boxes >= 0) & (d.boxes <= 1)).all())


def test_per_class_topk_limits_candidates() -> None:
    priors = default_boxes("ssd-small")
    locs, logits = heads(1, len(priors), 3, seed=2)
    out_all = postprocess(locs, logits, priors, topk_candidates=None, iou_threshold=1.0, max_detections=100000)
    out_k = postprocess(locs, logits, priors, topk_candidates=5, iou_threshold=1.0, max_detections=100000)
    # IoU 1.0 suppresses nothing: all candidates above threshold survive, or 5 per class with top-k
    assert len(out_k[0]) == 10 and len(out_all[0]) > 10
    probs = torch.softmax(logits[0], -1)
    for cls in (1, 2):
        np.testing.assert_allclose(
            out_k[0].scores[out_k[0].labels == cls].sort(descending=True).values, probs[:, cls].topk(5).values
        )


def test_exact_ties_are_ordered_by_class_then_rank() -> None:
    priors = default_boxes("ssd-small")
    locs = torch.zeros(1, len(priors), 4)
    logits = torch.full((1, len(priors), 4), -10.0)
    logits[0, 100, 1] = logits[0, 900, 3] = logits[0, 500, 2] = 40.0  # softmax exactly 1.0 in three classes
    out = postprocess(locs, logits, priors, score_threshold=0.5)
    assert out[0].labels.tolist() == [1, 2, 3]
    assert torch.equal(out[0].scores, out[0].scores[:1].expand(3))


def _reference_full_nms(locs, logits, priors, score_threshold, iou_threshold, max_detections):  # noqa: ANN001, ANN202
    """Every candidate through torchvision's nms, one (image, class) at a time, then the best per image."""
    from ssdtrt.core.codec import decode

    probs = torch.softmax(logits, -1)
    boxes = decode(locs, torch.as_tensor(priors), (0.1, 0.1, 0.2, 0.2)).clamp(0, 1)
    out = []
    for i in range(logits.shape[0]):
        rows = []
        for c in range(1, logits.shape[2]):
            idx = (probs[i, :, c] > score_threshold).nonzero().flatten()
            order = torch.sort(probs[i, idx, c], descending=True, stable=True).indices
            idx = idx[order]
            keep = torchvision.ops.nms(boxes[i, idx].double(), probs[i, idx, c].double(), iou_threshold)
            rows += [(float(probs[i, j, c]), c, *boxes[i, j].tolist()) for j in idx[keep].tolist()]
        rows.sort(key=lambda r: -r[0])  # stable: ties keep (class, rank) order
        out.append(np.asarray(rows[:max_detections], dtype=np.float64).reshape(-1, 6))
    return out


@pytest.mark.parametrize("collapse", [False, True])
def test_best_first_prefix_equals_full_nms_on_many_candidates(collapse: bool) -> None:
    """Thousands of candidates and no per-class top-k (seed 000's settings): the prefix NMS must equal full NMS,
    also when heavy suppression makes the prefix grow (collapse: every box of a class decodes to one of 3 boxes)."""
    from ssdtrt.core.codec import encode
    from ssdtrt.postprocess.host_numpy import postprocess_numpy

    priors = default_boxes("ssd-small")
    locs, logits = heads(2, len(priors), 7, seed=5, scale=4.0)
    if collapse:
        targets = torch.tensor([[0.1, 0.1, 0.4, 0.5], [0.5, 0.5, 0.9, 0.8], [0.2, 0.6, 0.5, 0.95]])
        which = torch.arange(len(priors)) % 3
        locs[:] = encode(targets[which], torch.as_tensor(priors), (0.1, 0.1, 0.2, 0.2))
    kwargs = dict(score_threshold=0.05, iou_threshold=0.5, topk_candidates=None, max_detections=100)
    ref = _reference_full_nms(locs, logits, priors, 0.05, 0.5, 100)
    assert sum(len(r) for r in ref) > 0
    for impl, got in (
        ("torch", postprocess(locs, logits, priors, **kwargs)),
        ("numpy", postprocess_numpy(locs.numpy(), logits.numpy(), priors, **kwargs)),
    ):
        for r, d in zip(ref, got):
            d = d.numpy()
            rows = np.concatenate([d.scores[:, None], d.labels[:, None], d.boxes], 1).astype(np.float64)
            assert rows.shape == r.shape, impl
            np.testing.assert_array_equal(rows[:, 1], r[:, 1], err_msg=impl)
            np.testing.assert_allclose(rows[:, [0, 2, 3, 4, 5]], r[:, [0, 2, 3, 4, 5]], atol=1e-6, err_msg=impl)
