"""What `ssdtrt detect` writes, checked piece by piece: annotated images (visualize) and COCO records (cocojson)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssdtrt.io.cocojson import category_ids_from_manifest, coco_records, write_coco_results
from ssdtrt.core.detections import Detections
from ssdtrt.core.errors import ManifestError
from ssdtrt.core.manifest import Manifest
from ssdtrt.io.draw import annotated_suffix, draw_detections, label_color, write_image

NAMES = ("cat", "dog", "car")


def dets(boxes: list[list[float]], scores: list[float], labels: list[int]) -> Detections:
    return Detections(
        np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32), np.asarray(labels, np.int64), NAMES
    )


def test_draw_detections_draws_boxes_in_label_colours() -> None:
    image = np.full((200, 300, 3), 255, np.uint8)
    d = dets([[50, 60, 150, 160], [200, 20, 280, 190]], [0.9, 0.4], [1, 3])
    out = draw_detections(image, d)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (image == 255).all()  # the input is not modified
    assert tuple(out[110, 50]) == label_color(1)  # left edge of box 1, mid-height (below its label)
    assert tuple(out[110, 280]) == label_color(3)  # right edge of box 2
    assert tuple(out[100, 100]) == (255, 255, 255)  # inside a box: untouched
    assert (out != 255).any(axis=2).sum() > 800  # labels drawn as well
    only_best = draw_detections(image, d, min_score=0.5)
    assert tuple(only_best[110, 280]) == (255, 255, 255)


def test_draw_detections_edge_cases() -> None:
    image = np.zeros((1, 1, 3), np.uint8)
    assert draw_detections(image, dets([], [], [])).shape == (1, 1, 3)
    out = draw_detections(image, dets([[-5, -5, 10, 10]], [0.5], [2]))  # outside the image: clipped, no error
    assert out.shape == (1, 1, 3)
    big = draw_detections(np.zeros((600, 800, 3), np.uint8), dets([[0, 0, 800, 600]], [0.77], [2]))  # at the border
    assert tuple(big[300, 0]) == label_color(2)


def test_write_image_round_trip_and_atomic(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = write_image(tmp_path / "sub" / "ünï.png", image)
    np.testing.assert_array_equal(cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1], image)
    assert sorted(p.name for p in path.parent.iterdir()) == ["ünï.png"]  # no temp file left
    assert annotated_suffix(".PNG") == ".png" and annotated_suffix(".ppm") == ".jpg" and annotated_suffix("") == ".jpg"


def test_coco_records_by_hand(tmp_path: Path) -> None:
    d = dets([[10.25, 20.5, 30.75, 60.0], [0, 0, 1, 1]], [0.987654321, 0.5], [2, 3])
    records = coco_records(d, image_id=7, file_name="a.jpg")
    assert records == [
        {"image_id": 7, "file_name": "a.jpg", "category_id": 2, "bbox": [10.25, 20.5, 20.5, 39.5], "score": 0.98765},
        {"image_id": 7, "file_name": "a.jpg", "category_id": 3, "bbox": [0.0, 0.0, 1.0, 1.0], "score": 0.5},
    ]
    mapped = coco_records(d, image_id=1, category_ids=[1, 18, 90])
    assert [r["category_id"] for r in mapped] == [18, 90] and "file_name" not in mapped[0]
    assert coco_records(dets([], [], []), image_id=1) == []
    path = write_coco_results(tmp_path / "r.json", records)
    assert json.loads(path.read_text()) == records


def test_category_ids_from_manifest() -> None:
    spec = {"name": "x"}
    m = Manifest("m.onnx", "onnx", spec, 4, list(NAMES), "raw", "fp32", [], [])
    assert category_ids_from_manifest(m) is None
    m.source = {"category_ids": [1, 18, 90]}
    np.testing.assert_array_equal(category_ids_from_manifest(m), [1, 18, 90])
    m.source = {"category_ids": [1, 2]}
    with pytest.raises(ManifestError, match="2 category ids for 3 classes"):
        category_ids_from_manifest(m)
