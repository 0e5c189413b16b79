"""COCO category ids travel dataset → training → checkpoint → ONNX manifest → detections JSON.

A COCO file's categories become labels 1..C-1 in id order; the COCO id of label L must reach `category_id` in
`detections.json`, so the chain has to carry `category_ids` (label L at index L-1). Reference: the ids written into
the tiny COCO annotation file below (sorted: 1, 3, 18), not anything ssdtrt computes.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssdtrt.core.errors import CheckpointError

torch = pytest.importorskip("torch")

COCO_IDS = [1, 3, 18]  # sorted ids of the categories below: labels 1, 2, 3


def _tiny_coco(root: Path) -> str:
    """A 4-image COCO dataset with category ids 18, 1, 3 (gaps, unsorted in the file); returns the dataset spec."""
    images_dir = root / "images"
    images_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(4):
        name = f"{i}.png"
        assert cv2.imwrite(str(images_dir / name), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        images.append({"id": 100 + i, "file_name": name, "width": 64, "height": 64})
        anns.append({"id": i + 1, "image_id": 100 + i, "category_id": [18, 1, 3, 18][i], "bbox": [8, 8, 30, 30]})
    data = {
        "images": images,
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
        "annotations": anns,
    }
    ann = root / "instances.json"
    ann.write_text(json.dumps(data))
    return f"coco:{images_dir}:{ann}"


def test_coco_training_carries_category_ids_into_checkpoint_and_export(tmp_path: Path) -> None:
    from ssdtrt.io.cocojson import category_ids_from_manifest, coco_records
    from ssdtrt.core.detections import Detections
    from ssdtrt.export.onnx_export import export_checkpoint
    from ssdtrt.core.manifest import read_manifest
    from ssdtrt.model.checkpoint import load_checkpoint, load_model
    from ssdtrt.train.loop import TrainConfig, train

    cfg = TrainConfig(
        out_dir=str(tmp_path / "run"), epochs=1, preset="ssd-small", data=_tiny_coco(tmp_path / "coco"),
        batch_size=4, eval_limit=4, augment="light", workers=0, threads=1,
    )
    train(cfg)
    ckpt_path = tmp_path / "run" / "last.pt"
    ckpt = load_checkpoint(ckpt_path)
    assert ckpt["class_names"] == ["person", "car", "dog"] and ckpt["category_ids"] == COCO_IDS
    assert load_model(ckpt_path).category_ids == COCO_IDS

    manifest = export_checkpoint(ckpt_path, tmp_path / "m_nms.onnx", mode="nms").manifest
    assert manifest.source["category_ids"] == COCO_IDS
    assert read_manifest(tmp_path / "m_nms.onnx").source["category_ids"] == COCO_IDS  # the sidecar on disk
    ids = category_ids_from_manifest(manifest)
    boxes_xyxy = np.array([[0, 0, 5, 5]] * 3, np.float32)
    dets = Detections(boxes_xyxy, np.array([0.9, 0.8, 0.7], np.float32), np.array([1, 2, 3]))
    assert [r["category_id"] for r in coco_records(dets, image_id=100, category_ids=ids)] == COCO_IDS


def test_data_without_category_ids_leaves_them_out(small_checkpoint: Path, tmp_path: Path) -> None:
    from ssdtrt.export.onnx_export import export_checkpoint
    from ssdtrt.model.checkpoint import load_checkpoint, load_model

    assert load_checkpoint(small_checkpoint)["category_ids"] is None
    assert load_model(small_checkpoint).category_ids is None
    manifest = export_checkpoint(small_checkpoint, tmp_path / "m.onnx", mode="raw").manifest
    assert "category_ids" not in manifest.source


def test_category_id_count_must_match_the_classes(tmp_path: Path) -> None:
    from ssdtrt.model.checkpoint import save_checkpoint
    from ssdtrt.model.ssd import build_model

    model = build_model("ssd-small", class_names=("person", "car", "dog"))
    model.category_ids = [1, 3]
    with pytest.raises(CheckpointError, match="2 category ids for 3 classes"):
        save_checkpoint(tmp_path / "bad.pt", model)
    assert not (tmp_path / "bad.pt").exists()
