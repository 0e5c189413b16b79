"""Detection metrics: COCO mAP@[.5:.95] / mAP@.5 (pycocotools) and VOC07 11-point AP per class (numpy).

Everything is in pixels of the original images. `evaluate(predict_fn, dataset)` scores any backend (torch, ONNX
Runtime, OpenVINO, TensorRT) through one hook: `predict_fn(list of HxWx3 uint8 RGB) -> list[Detections in pixels]`,
in practice `Detector(model).detect` (the one route every command uses; `model_detector` for a model in memory).

Conventions:
- `difficult` ground truth is `iscrowd=1` for COCO (pycocotools then ignores it: matching detections are neither TP
  nor FP) and is ignored by VOC07 AP exactly as in the VOC devkit.
- VOC07 IoU uses continuous coordinates (no +1 pixel as in the 2007 devkit) so it agrees with pycocotools; detections
  are ranked by score with a stable sort (ties keep prediction order).
- A class without any (non-difficult) ground truth has AP None and is left out of the means.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ssdtrt.core.boxes import box_iou_xyxy
from ssdtrt.core.detections import Detections

if TYPE_CHECKING:
    from ssdtrt.inference.detector import Detector

PredictFn = Callable[[list[np.ndarray]], list[Detections]]


@dataclass(frozen=True)
class GroundTruth:
    """One image's annotations in pixels: boxes_xyxy [K, 4], labels [K] in 1..C-1, difficult [K] bool."""

    boxes_xyxy: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    height: int
    width: int

    @staticmethod
    def from_sample(sample: Any) -> GroundTruth:
        """From a dataset Sample (or anything with boxes_xyxy, labels, optional difficult and image/height/width)."""
        boxes = np.asarray(sample.boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(sample.labels, dtype=np.int64).reshape(-1)
        difficult = getattr(sample, "difficult", None)
        difficult = np.zeros(len(labels), bool) if difficult is None else np.asarray(difficult, bool).reshape(-1)
        image = getattr(sample, "image", None)
        if image is not None:
            height, width = int(image.shape[0]), int(image.shape[1])
        else:
            height, width = int(sample.height), int(sample.width)
        return GroundTruth(boxes, labels, difficult, height, width)


@dataclass
class EvalResult:
    """map = COCO mAP@[.5:.95], map50 / map75 = COCO AP at IoU .5 / .75, map50_voc07 = mean VOC07 11-point AP.

    per_class: {name: {"ap": COCO AP@[.5:.95], "ap50": COCO AP@.5, "ap50_voc07": VOC07 AP, "num_gt": int}}.
    """

    map: float
    map50: float
    map75: float
    map50_voc07: float
    per_class: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    num_images: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def voc07_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """11-point interpolated AP (VOC2007): mean over t in {0, .1, ..., 1} of the max precision at recall >= t."""
    thresholds = np.linspace(0.0, 1.0, 11)
    if recall.size == 0:
        return 0.0
    # running max of precision from the right = max precision at recall >= r (recall is non-decreasing)
    prec_right = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, thresholds, side="left")  # first point with recall >= t
    ok = idx < recall.size
    return float(np.where(ok, prec_right[np.minimum(idx, recall.size - 1)], 0.0).mean())


def _voc07_class_ap(
    det_img: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: np.ndarray,
    gt_difficult: np.ndarray,
    gt_valid: np.ndarray,
    iou_threshold: float = 0.5,
) -> float | None:
    """VOC07 AP of one class. Ground truth padded per image: gt_boxes [I, K, 4], gt_difficult/gt_valid [I, K].

    The devkit's greedy matching is vectorized: each detection (by descending score) looks only at its
    highest-IoU ground truth; it is a TP iff that IoU >= threshold, the box is not difficult and no higher-scored
    detection took the same box — i.e. it is the first occurrence of that (image, box) pair.
    """
    n_pos = int((gt_valid & ~gt_difficult).sum())
    if n_pos == 0:
        return None
    if det_scores.size == 0:
        return 0.0
    order = np.argsort(-det_scores, kind="stable")
    det_img, det_boxes = det_img[order], det_boxes[order]
    iou = box_iou_xyxy(det_boxes[:, None, :], gt_boxes[det_img])[:, 0, :]  # [D, K]
    iou = np.where(gt_valid[det_img], iou, -1.0)
    best = iou.argmax(axis=1)
    best_iou = iou[np.arange(len(best)), best]
    hit = best_iou >= iou_threshold
    difficult = hit & gt_difficult[det_img, best]
    key = det_img * gt_boxes.shape[1] + best
    first = np.zeros(len(key), bool)
    hit_idx = np.flatnonzero(hit & ~difficult)
    _, first_pos = np.unique(key[hit_idx], return_index=True)
    first[hit_idx[first_pos]] = True
    tp = first.astype(np.float64)
    fp = (~hit | (hit & ~difficult & ~first)).astype(np.float64)  # difficult matches count as neither
    tp_cum, fp_cum = np.cumsum(tp), np.cumsum(fp)
    keep = (tp + fp) > 0  # curve points only where a TP or FP happened (devkit: ignored dets add no point)
    recall = tp_cum[keep] / n_pos
    precision = tp_cum[keep] / np.maximum(tp_cum[keep] + fp_cum[keep], np.finfo(np.float64).eps)
    return voc07_ap(recall, precision)


def _pad_gt(gts: Sequence[GroundTruth], label: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sel = [g.labels == label for g in gts]
    k_max = max([1, *(int(s.sum()) for s in sel)])
    boxes = np.zeros((len(gts), k_max, 4))
    difficult = np.zeros((len(gts), k_max), bool)
    valid = np.zeros((len(gts), k_max), bool)
    for i, (g, s) in enumerate(zip(gts, sel)):  # one row per image (not per box)
        k = int(s.sum())
        boxes[i, :k], difficult[i, :k], valid[i, :k] = g.boxes_xyxy[s], g.difficult[s], True
    return boxes, difficult, valid


def _coco_eval(
    preds: Sequence[Detections], gts: Sequence[GroundTruth], num_classes: int, max_detections: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """pycocotools on in-memory objects: (stats[12], precision [T, R, K, A, M] or None without detections)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    anns = []
    for i, g in enumerate(gts):
        wh = g.boxes_xyxy[:, 2:] - g.boxes_xyxy[:, :2]
        for j in range(len(g.labels)):  # building the COCO JSON; pycocotools itself wants dicts
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": int(g.labels[j]),
                    "bbox": [float(g.boxes_xyxy[j, 0]), float(g.boxes_xyxy[j, 1]), float(wh[j, 0]), float(wh[j, 1])],
                    "area": float(wh[j, 0] * wh[j, 1]),
                    "iscrowd": int(g.difficult[j]),
                }
            )
    coco_gt = COCO()
    coco_gt.dataset = {
        "images": [{"id": i, "height": g.height, "width": g.width} for i, g in enumerate(gts)],
        "annotations": anns,
        "categories": [{"id": c} for c in range(1, num_classes + 1)],
    }
    dets = [
        np.column_stack(
            [
                np.full(len(d), i, np.float64),
                d.boxes[:, :2],
                d.boxes[:, 2:] - d.boxes[:, :2],
                d.scores,
                d.labels,
            ]
        )
        for i, d in enumerate(preds)
        if len(d)
    ]
    if not dets or not anns:
        return np.zeros(12), None
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(np.concatenate(dets).astype(np.float64))
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.maxDets = [1, 10, max_detections]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats), ev.eval["precision"]


def _mean(values: Iterable[float | None]) -> float:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else 0.0


def evaluate_detections(
    predictions: Sequence[Detections],
    ground_truth: Sequence[Any],
    class_names: Sequence[str],
    *,
    max_detections: int = 100,
) -> EvalResult:
    """Score per-image detections (pixels) against ground truth (GroundTruth or Sample-like, pixels)."""
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} predictions for {len(ground_truth)} images")
    gts = [g if isinstance(g, GroundTruth) else GroundTruth.from_sample(g) for g in ground_truth]
    preds = [d.numpy() for d in predictions]
    preds = [Detections(d.boxes.reshape(-1, 4).astype(np.float64), d.scores.reshape(-1), d.labels.reshape(-1)) for d in preds]
    num_classes = len(class_names)
    stats, precision = _coco_eval(preds, gts, num_classes, max_detections)

    det_img = np.concatenate([np.full(len(d), i) for i, d in enumerate(preds)] + [np.zeros(0, int)]).astype(np.int64)
    det_boxes = np.concatenate([d.boxes for d in preds] + [np.zeros((0, 4))])
    det_scores = np.concatenate([d.scores for d in preds] + [np.zeros(0)]).astype(np.float64)
    det_labels = np.concatenate([d.labels for d in preds] + [np.zeros(0, int)]).astype(np.int64)
    per_class: dict[str, dict[str, float | int | None]] = {}
    for k, name in enumerate(class_names):  # one numpy pass per class
        label = k + 1
        boxes, difficult, valid = _pad_gt(gts, label)
        num_gt = int((valid & ~difficult).sum())
        sel = det_labels == label
        ap_voc = _voc07_class_ap(det_img[sel], det_boxes[sel], det_scores[sel], boxes, difficult, valid)
        ap = ap50 = None
        if num_gt:
            ap = ap50 = 0.0
            if precision is not None:
                p_all, p_50 = precision[:, :, k, 0, -1], precision[0, :, k, 0, -1]
                ap = float(p_all[p_all > -1].mean()) if (p_all > -1).any() else 0.0
                ap50 = float(p_50[p_50 > -1].mean()) if (p_50 > -1).any() else 0.0
        per_class[name] = {"ap": ap, "ap50": ap50, "ap50_voc07": ap_voc, "num_gt": num_gt}
    return EvalResult(
        map=max(float(stats[0]), 0.0),
        map50=max(float(stats[1]), 0.0),
        map75=max(float(stats[2]), 0.0),
        map50_voc07=_mean(v["ap50_voc07"] for v in per_class.values()),  # type: ignore[misc]
        per_class=per_class,
        num_images=len(gts),
    )


def evaluate(
    predict_fn: PredictFn,
    dataset: Any,
    *,
    batch_size: int = 16,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
    class_names: Sequence[str] | None = None,
    max_detections: int = 100,
) -> EvalResult:
    """Run `predict_fn` over `dataset` (len / [i] -> Sample, .class_names) in batches and score it.

    `limit` evaluates the first N images only; `progress(n)` is called with the number of images after each batch.
    """
    n_images = len(dataset) if limit is None else min(int(limit), len(dataset))
    names = list(class_names if class_names is not None else dataset.class_names)
    preds: list[Detections] = []
    gts: list[GroundTruth] = []
    for start in range(0, n_images, batch_size):
        samples = [dataset[i] for i in range(start, min(start + batch_size, n_images))]
        out = predict_fn([s.image for s in samples])
        if len(out) != len(samples):
            raise ValueError(f"predict_fn returned {len(out)} results for {len(samples)} images")
        preds.extend(out)
        gts.extend(GroundTruth.from_sample(s) for s in samples)
        if progress is not None:
            progress(len(samples))
    return evaluate_detections(preds, gts, names, max_detections=max_detections)


@contextlib.contextmanager
def model_detector(model: Any, device: str = "cpu", batch_size: int = 16) -> Iterator[Detector]:
    """A `Detector` over an SSD torch model in memory (`TorchRunner.from_model`), postprocess in torch (as the
    checkpoint's own evaluation: `ssdtrt eval model.pt`), for `evaluate(det.detect, ...)` during training.

    The model is in eval mode inside the block and back in its previous mode after it."""
    from ssdtrt.inference.detector import Detector
    from ssdtrt.runtime.torch_runner import TorchRunner

    device = str(device)
    with TorchRunner.from_model(model, device) as runner:
        yield Detector(runner, batch_size=batch_size, postprocess_placement="host-torch",
                       postprocess_device=device if device.startswith("cuda") else "cpu")
