"""COCO JSON reader: `coco:IMAGES_DIR:ANNOTATIONS_JSON` (the json module; pycocotools is only needed for eval).

Labels are contiguous: the categories sorted by id become labels 1..C-1; `category_ids[L - 1]` is the COCO id of
label L (needed to write COCO result files), `class_names[L - 1]` its name. COCO bboxes [x, y, w, h] are
continuous pixel coordinates already, so xyxy = [x, y, x + w, y + h]. `iscrowd` becomes `difficult` (COCO eval
ignores crowd regions). Boxes with zero width or height carry no area and are dropped. Images without annotations
are kept (they are negatives for training and count as images for eval). Sample.image_id is the COCO image id.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ssdtrt.data.images import read_image_rgb
from ssdtrt.data.types import DetectionDataset, Sample
from ssdtrt.core.errors import DatasetError


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetError(f"{path}: annotation file not found")
    try:
        with path.open("rb") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: malformed JSON: {err}") from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot read: {err}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: malformed COCO file: top level is not an object")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise DatasetError(f"{path}: malformed COCO file: missing or non-list {', '.join(repr(k) for k in missing)}")
    return data


class COCODataset(DetectionDataset):
    """A COCO-format detection dataset (any COCO-style JSON, e.g. instances_val2017.json)."""

    def __init__(
        self, images_dir: str | os.PathLike[str], annotations_json: str | os.PathLike[str], *, size: int | None = None
    ) -> None:
        self.images_dir = Path(images_dir)
        self.annotations_json = Path(annotations_json)
        ann_path = self.annotations_json
        if not self.images_dir.is_dir():
            raise DatasetError(f"{self.images_dir}: images folder not found")
        data = _load_json(ann_path)
        try:
            cats = sorted(((int(c["id"]), str(c["name"])) for c in data["categories"]), key=lambda c: c[0])
            images = [(int(im["id"]), str(im["file_name"])) for im in data["images"]]
            anns = data["annotations"]
            ann_image = np.array([int(a["image_id"]) for a in anns], dtype=np.int64)
            ann_cat = np.array([int(a["category_id"]) for a in anns], dtype=np.int64)
            ann_xywh = np.array([[float(v) for v in a["bbox"]] for a in anns], dtype=np.float64).reshape(-1, 4)
            ann_crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
        except (KeyError, TypeError, ValueError) as err:
            kind = f"missing key {err}" if isinstance(err, KeyError) else str(err)
            raise DatasetError(f"{ann_path}: malformed COCO file: {kind}") from None
        if len({c[0] for c in cats}) != len(cats):
            raise DatasetError(f"{ann_path}: malformed COCO file: duplicate category ids")
        self.category_ids: tuple[int, ...] = tuple(c[0] for c in cats)
        self.class_names: tuple[str, ...] = tuple(c[1] for c in cats)  # type: ignore[misc]
        all_ids = np.array([i for i, _ in images], dtype=np.int64)
        if np.unique(all_ids).size != all_ids.size:
            raise DatasetError(f"{ann_path}: malformed COCO file: duplicate image ids")
        if size is not None:
            images = images[: int(size)]
        self.image_ids: tuple[int, ...] = tuple(i for i, _ in images)
        self._files = [self.images_dir / name for _, name in images]
        missing = next((p for p in self._files if not p.is_file()), None)
        if missing is not None:
            raise DatasetError(f"{missing}: image file not found (listed in {ann_path})")

        label_pos = self._lookup(np.asarray(self.category_ids, dtype=np.int64), ann_cat, "category_id")
        image_pos = self._lookup(all_ids, ann_image, "image_id")  # position in the file's image list
        if (ann_xywh[:, 2:] < 0).any():
            raise DatasetError(f"{ann_path}: malformed COCO file: negative bbox width or height")
        # group by image: keep positive-area boxes of the images in this (possibly truncated) list, sort once
        keep = (ann_xywh[:, 2] > 0) & (ann_xywh[:, 3] > 0) & (image_pos < len(images))
        order = np.argsort(image_pos[keep], kind="stable")
        xywh = ann_xywh[keep][order]
        self._boxes_xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(np.float32)
        self._labels = (label_pos[keep][order] + 1).astype(np.int64)
        self._crowd = ann_crowd[keep][order]
        self._starts = np.searchsorted(image_pos[keep][order], np.arange(len(images) + 1))

    def _lookup(self, ids: np.ndarray, queries: np.ndarray, what: str) -> np.ndarray:
        """Positions of `queries` in the unsorted unique `ids`; DatasetError naming the first unknown one."""
        if queries.size == 0:
            return np.zeros(0, dtype=np.int64)
        sorter = np.argsort(ids, kind="stable")
        pos = np.minimum(np.searchsorted(ids[sorter], queries), max(ids.size - 1, 0))
        found = ids[sorter][pos] == queries if ids.size else np.zeros(queries.shape, dtype=bool)
        if not found.all():
            bad = int(queries[int(np.argmin(found))])
            raise DatasetError(f"{self.annotations_json}: malformed COCO file: annotation with unknown {what} {bad}")
        return sorter[pos]

    @property
    def label_to_category_id(self) -> dict[int, int]:
        return {label: cid for label, cid in enumerate(self.category_ids, start=1)}

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> Sample:
        i = self._check_index(index)
        image = read_image_rgb(self._files[i])
        lo, hi = int(self._starts[i]), int(self._starts[i + 1])
        h, w = image.shape[:2]
        boxes = np.clip(self._boxes_xyxy[lo:hi], 0.0, np.array([w, h, w, h], dtype=np.float32))
        return Sample(image, boxes, self._labels[lo:hi], self._crowd[lo:hi], self.image_ids[i], str(self._files[i]))
