"""Detections → COCO results JSON (`[{image_id, category_id, bbox: [x, y, w, h] px, score}]`), torch-free.

The list loads with pycocotools' `COCO.loadRes`. Each record also carries `file_name` (the input it came from) so
the file is useful without a ground-truth index. `category_id` is the label (1..C-1) unless the model's manifest
carries COCO category ids (`source["category_ids"]`, the id of label L at index L-1), e.g. 1..90 with gaps.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssdtrt.core.detections import Detections
from ssdtrt.core.errors import ManifestError
from ssdtrt.io.files import atomic_write_json
from ssdtrt.core.manifest import Manifest

#: Decimals kept in the JSON: 1/1000 px for boxes, 1e-5 for scores (parity checks compare well below a pixel).
BOX_DECIMALS = 3
SCORE_DECIMALS = 5


def category_ids_from_manifest(manifest: Manifest) -> np.ndarray | None:
    """COCO category id per label (index L-1) if the manifest has them, else None (category_id = label)."""
    ids = (manifest.source or {}).get("category_ids")
    if ids is None:
        return None
    ids_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
    if ids_arr.size != manifest.num_classes - 1:
        raise ManifestError(
            f"manifest of {manifest.artifact}: {ids_arr.size} category ids for {manifest.num_classes - 1} classes"
        )
    return ids_arr


def coco_records(
    dets: Detections, image_id: int, file_name: str | None = None, category_ids: Sequence[int] | np.ndarray | None = None
) -> list[dict[str, Any]]:
    """COCO result records of one image (pixel xyxy boxes → [x, y, w, h])."""
    d = dets.numpy()
    boxes = np.asarray(d.boxes, dtype=np.float64).reshape(-1, 4)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).round(BOX_DECIMALS)
    labels = np.asarray(d.labels, dtype=np.int64).reshape(-1)
    cats = labels if category_ids is None else np.asarray(category_ids, dtype=np.int64)[labels - 1]
    scores = np.asarray(d.scores, dtype=np.float64).reshape(-1).round(SCORE_DECIMALS)
    base: dict[str, Any] = {"image_id": int(image_id)}
    if file_name is not None:
        base["file_name"] = file_name
    return [
        {**base, "category_id": c, "bbox": b, "score": s}
        for c, b, s in zip(cats.tolist(), xywh.tolist(), scores.tolist())
    ]


def write_coco_results(path: str | os.PathLike[str], records: list[dict[str, Any]]) -> Path:
    """Write the records atomically (a failed run never leaves half a JSON)."""
    return atomic_write_json(path, records)
