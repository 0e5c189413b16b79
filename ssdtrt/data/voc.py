"""Pascal VOC reader (VOCdevkit layout): `voc:PATH` with PATH a VOC20xx folder holding Annotations/, JPEGImages/
and ImageSets/Main/<split>.txt.

Coordinates: VOC XML boxes are 1-based inclusive pixel indices (xmin=1, xmax=W covers the whole image). We return
continuous pixel coordinates (x1, y1, x2, y2) = (xmin - 1, ymin - 1, xmax, ymax), the conversion of detectron2's
pascal_voc loader (and torchvision's / mmdet's "subtract 1 from the minimum corner"), so width = xmax - xmin + 1
pixels and a horizontal flip is x1 -> W - x2.

All annotations are parsed when the dataset is opened, so a malformed file fails early with its name; images are
decoded on access.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ssdtrt.data.images import read_image_rgb
from ssdtrt.data.types import DetectionDataset, Sample
from ssdtrt.core.errors import DatasetError

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

_CLASS_INDEX = {name: i + 1 for i, name in enumerate(VOC_CLASSES)}


def _text(node: ET.Element, tag: str, xml_path: Path) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DatasetError(f"{xml_path}: malformed annotation: <{node.tag}> has no <{tag}>")
    return child.text.strip()


def parse_voc_xml(xml_path: Path) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """One annotation file -> (image file name, boxes_xyxy float32 [K,4] continuous px, labels int64, difficult)."""
    try:
        root = ET.parse(xml_path).getroot()
    except FileNotFoundError:
        raise DatasetError(f"{xml_path}: annotation file not found") from None
    except (ET.ParseError, OSError) as err:
        raise DatasetError(f"{xml_path}: malformed XML: {err}") from None
    filename = root.findtext("filename", default="").strip() or f"{xml_path.stem}.jpg"
    objects = root.findall("object")
    names = [_text(obj, "name", xml_path) for obj in objects]
    unknown = sorted({n for n in names if n not in _CLASS_INDEX})
    if unknown:
        raise DatasetError(f"{xml_path}: unknown VOC class name(s) {', '.join(map(repr, unknown))}")
    coords: list[list[str]] = []
    for obj in objects:
        bnd = obj.find("bndbox")
        if bnd is None:
            raise DatasetError(f"{xml_path}: malformed annotation: <object> has no <bndbox>")
        coords.append([_text(bnd, tag, xml_path) for tag in ("xmin", "ymin", "xmax", "ymax")])
    try:
        raw = np.array(coords, dtype=np.float64).reshape(-1, 4)
        difficult = np.array([int(obj.findtext("difficult", default="0").strip() or 0) for obj in objects], dtype=bool)
    except ValueError as err:
        raise DatasetError(f"{xml_path}: malformed annotation: non-numeric value ({err})") from None
    boxes = (raw - np.array([1.0, 1.0, 0.0, 0.0])).astype(np.float32)
    bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bad.any():
        raise DatasetError(f"{xml_path}: malformed annotation: box {raw[int(np.argmax(bad))].tolist()} is empty")
    labels = np.array([_CLASS_INDEX[n] for n in names], dtype=np.int64)
    return filename, boxes, labels, difficult


def _resolve_root(root: Path) -> Path:
    """Accept the VOC20xx folder itself, or a VOCdevkit folder holding exactly one VOC20xx folder."""
    if (root / "Annotations").is_dir():
        return root
    years = sorted(p for p in root.glob("VOC20*") if (p / "Annotations").is_dir()) if root.is_dir() else []
    if len(years) == 1:
        return years[0]
    hint = f" (it holds {', '.join(p.name for p in years)}: name one)" if years else ""
    raise DatasetError(
        f"{root}: not a VOC folder: expected Annotations/, JPEGImages/ and ImageSets/Main/ inside{hint}"
    )


class VOCDataset(DetectionDataset):
    """One VOC split. image_id is the index in the split file; path is the JPEG path."""

    class_names = VOC_CLASSES

    def __init__(self, root: str | os.PathLike[str], split: str = "train", *, size: int | None = None) -> None:
        self.root = _resolve_root(Path(root))
        split_file = self.root / "ImageSets" / "Main" / f"{split}.txt"
        if not split_file.is_file():
            available = sorted(p.stem for p in split_file.parent.glob("*.txt") if "_" not in p.stem)
            raise DatasetError(
                f"{split_file}: split file not found (available splits: {', '.join(available) or 'none'})"
            )
        ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
        if size is not None:
            ids = ids[: int(size)]
        self.split = split
        self.ids: tuple[str, ...] = tuple(ids)
        self._image_paths: list[Path] = []
        self._boxes: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._difficult: list[np.ndarray] = []
        for image_id in self.ids:
            xml_path = self.root / "Annotations" / f"{image_id}.xml"
            filename, boxes, labels, difficult = parse_voc_xml(xml_path)
            image_path = self.root / "JPEGImages" / filename
            if not image_path.is_file():
                raise DatasetError(f"{image_path}: image file not found (referenced by {xml_path})")
            self._image_paths.append(image_path)
            self._boxes.append(boxes)
            self._labels.append(labels)
            self._difficult.append(difficult)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Sample:
        i = self._check_index(index)
        image = read_image_rgb(self._image_paths[i])
        h, w = image.shape[:2]
        boxes = np.clip(self._boxes[i], 0.0, np.array([w, h, w, h], dtype=np.float32))
        return Sample(image, boxes, self._labels[i], self._difficult[i], i, str(self._image_paths[i]))
