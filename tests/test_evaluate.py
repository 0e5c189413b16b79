"""mAP evaluation: perfect / empty / shifted predictions, a hand-computed VOC07 AP case, difficult boxes."""

from __future__ import annotations

import numpy as np
import pytest

from ssdtrt.core.detections import Detections
from ssdtrt.evaluate import EvalResult, GroundTruth, evaluate, evaluate_detections, voc07_ap

NAMES = ("circle", "square")


def _gt(boxes: list[list[float]], labels: list[int], difficult: list[bool] | None = None) -> GroundTruth:
    return GroundTruth(
        np.asarray(boxes, np.float64).reshape(-1, 4),
        np.asarray(labels, np.int64),
        np.asarray(difficult if difficult is not None else [False] * len(labels), bool),
        200,
        300,
    )


def _det(boxes: list[list[float]], scores: list[float], labels: list[int]) -> Detections:
    return Detections(
        np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32), np.asarray(labels, np.int64)
    )


GTS = [
    _gt([[10, 10, 60, 60], [100, 50, 180, 150]], [1, 2]),
    _gt([[30, 20, 90, 100]], [1]),
    _gt([], []),
]


def test_perfect_predictions_score_one() -> None:
    preds = [_det(g.boxes_xyxy.tolist(), [0.9] * len(g.labels), g.labels.tolist()) for g in GTS]
    res = evaluate_detections(preds, GTS, NAMES)
    assert isinstance(res, EvalResult)
    assert res.map == pytest.approx(1.0) and res.map50 == pytest.approx(1.0) and res.map50_voc07 == pytest.approx(1.0)
    for name in NAMES:
        assert res.per_class[name]["ap"] == pytest.approx(1.0) and res.per_class[name]["ap50_voc07"] == 1.0
    assert res.per_class["circle"]["num_gt"] == 2
    d = res.to_dict()
    assert set(d) >= {"map", "map50", "per_class"} and d["num_images"] == 3


def test_empty_predictions_score_zero() -> None:
    res = evaluate_detections([_det([], [], [])] * 3, GTS, NAMES)
    assert res.map == 0.0 and res.map50 == 0.0 and res.map50_voc07 == 0.0
    assert res.per_class["square"]["ap50_voc07"] == 0.0


def test_iou_06_counts_at_50_not_at_75() -> None:
    # gt (0, 0, 100, 100); pred shifted right by 25 px: IoU = 75*100 / (2*10000 - 7500) = 0.6
    gts = [_gt([[0, 0, 100, 100]], [1])]
    preds = [_det([[25, 0, 125, 100]], [0.8], [1])]
    res = evaluate_detections(preds, gts, NAMES)
    assert res.map50 == pytest.approx(1.0)
    assert res.map75 == 0.0
    # AP over .50:.95 counts thresholds .50 and .55 and .60 (IoU .6 >= .6 matches): 3 of 10
    assert res.map == pytest.approx(0.3, abs=1e-6)
    assert res.per_class["circle"]["ap50_voc07"] == 1.0
    assert res.per_class["square"]["ap"] is None  # no ground truth of that class


def test_voc07_ap_hand_computed() -> None:
    # Class 1, 3 ground truths over two images; 5 detections, by score:
    #  d1 .9 img0 hits g0 -> TP  (R 1/3, P 1)
    #  d2 .8 img0 hits g0 again -> FP (duplicate)  (R 1/3, P 1/2)
    #  d3 .7 img1 misses -> FP (R 1/3, P 1/3)
    #  d4 .6 img1 hits g2 -> TP (R 2/3, P 2/4)
    #  d5 .5 img0 hits g1 -> TP (R 1, P 3/5)
    # 11-point: t=0..0.3 -> max P at R>=t = 1 (4 pts); t=.4..0.6 -> max(.5, .6) = .6 (3 pts); t=.7..1 -> .6 (4 pts)
    gts = [_gt([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1]), _gt([[50, 50, 90, 90]], [1])]
    preds = [
        _det([[0, 0, 10, 10], [1, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8, 0.5], [1, 1, 1]),
        _det([[0, 0, 5, 5], [50, 50, 90, 91]], [0.7, 0.6], [1, 1]),
    ]
    expected = (4 * 1.0 + 7 * 0.6) / 11
    res = evaluate_detections(preds, gts, NAMES)
    assert res.per_class["circle"]["ap50_voc07"] == pytest.approx(expected, abs=1e-9)
    # the same by the devkit's loop formula on the P/R curve
    rec = np.array([1, 1, 1, 2, 3]) / 3
    prec = np.array([1, 1 / 2, 1 / 3, 2 / 4, 3 / 5])
    ref = np.mean([prec[rec >= t].max() if (rec >= t).any() else 0.0 for t in np.arange(0, 1.1, 0.1)])
    assert voc07_ap(rec, prec) == pytest.approx(ref, abs=1e-12) == pytest.approx(expected, abs=1e-12)


def test_difficult_ground_truth_is_ignored() -> None:
    gts = [_gt([[0, 0, 50, 50], [100, 100, 150, 150]], [1, 1], [False, True])]
    only_easy = [_det([[0, 0, 50, 50]], [0.9], [1])]
    both = [_det([[0, 0, 50, 50], [100, 100, 150, 150]], [0.9, 0.95], [1, 1])]
    for preds in (only_easy, both):  # missing a difficult box costs nothing; finding it is no FP
        res = evaluate_detections(preds, gts, NAMES)
        assert res.per_class["circle"]["ap50_voc07"] == 1.0
        assert res.map50 == pytest.approx(1.0)
        assert res.per_class["circle"]["num_gt"] == 1


def test_evaluate_runs_predict_fn_over_a_dataset() -> None:
    class Sample:
        def __init__(self, g: GroundTruth) -> None:
            self.image = np.zeros((g.height, g.width, 3), np.uint8)
            self.boxes_xyxy, self.labels, self.difficult = g.boxes_xyxy, g.labels, g.difficult

    class Dataset:
        class_names = NAMES

        def __len__(self) -> int:
            return len(GTS)

        def __getitem__(self, i: int) -> Sample:
            return Sample(GTS[i])

    seen: list[int] = []

    def predict(images: list[np.ndarray]) -> list[Detections]:
        start = sum(seen)
        return [_det(GTS[start + j].boxes_xyxy.tolist(), [1.0] * len(GTS[start + j].labels), GTS[start + j].labels.tolist())
                for j in range(len(images))]

    res = evaluate(predict, Dataset(), batch_size=2, progress=seen.append)
    assert seen == [2, 1] and res.map == pytest.approx(1.0)
    res = evaluate(lambda imgs: [_det([], [], [])] * len(imgs), Dataset(), limit=2)
    assert res.num_images == 2 and res.map == 0.0
