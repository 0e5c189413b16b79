"""Datasets and augmentations. `open_dataset(spec)` turns a --data SPEC into a DetectionDataset:

    synthetic                         the embedded shapes dataset (no files; deterministic from the seed)
    voc:PATH                          a VOC20xx folder (Annotations/, JPEGImages/, ImageSets/Main/<split>.txt)
    coco:IMAGES_DIR:ANNOTATIONS_JSON  a COCO-format dataset (the split argument is ignored: the JSON is the split)

Readers, transforms and the torch loader are imported lazily (no cv2/torch import on `import ssdtrt.data`).
"""

from __future__ import annotations

from pathlib import Path

from ssdtrt.core.errors import DatasetError
from ssdtrt.core.lazy import lazy_getattr, lazy_names
from ssdtrt.data.types import DetectionDataset, Sample

SPEC_FORMS = "'synthetic', 'voc:PATH' or 'coco:IMAGES_DIR:ANNOTATIONS_JSON'"

_LAZY_MODULES = {"transforms", "synthetic", "voc", "coco", "loader", "images"}
_LAZY_NAMES = lazy_names({
    "ssdtrt.data.synthetic": ("SyntheticShapes",),
    "ssdtrt.data.voc": ("VOCDataset",),
    "ssdtrt.data.coco": ("COCODataset",),
    "ssdtrt.data.transforms": ("TrainTransform", "EvalTransform"),
    "ssdtrt.data.loader": ("TorchDetectionDataset", "collate", "make_loader"),
})

__all__ = ["DetectionDataset", "Sample", "open_dataset", "SPEC_FORMS", *sorted(_LAZY_NAMES), *sorted(_LAZY_MODULES)]


def _split_coco(rest: str) -> tuple[str, str]:
    """'IMAGES:ANN' -> (IMAGES, ANN); prefers the colon after which the left side is an existing folder."""
    cuts = [i for i, ch in enumerate(rest) if ch == ":"]
    if not cuts:
        raise DatasetError(f"bad dataset spec 'coco:{rest}'; use {SPEC_FORMS}")
    cut = next((i for i in cuts if Path(rest[:i]).is_dir()), cuts[0])
    images, ann = rest[:cut], rest[cut + 1 :]
    if not images or not ann:
        raise DatasetError(f"bad dataset spec 'coco:{rest}'; use {SPEC_FORMS}")
    return images, ann


def open_dataset(spec: str, split: str = "train", *, size: int | None = None, seed: int = 0) -> DetectionDataset:
    """Open a dataset from its spec. `size` keeps the first `size` images (synthetic: generates that many);
    `seed` only affects the synthetic dataset. Raises DatasetError naming the accepted forms or the bad file."""
    if size is not None and int(size) < 0:
        raise DatasetError(f"dataset size must be >= 0, not {size}")
    kind, _, rest = spec.partition(":")
    if kind == "synthetic" and not rest:
        from ssdtrt.data.synthetic import SyntheticShapes

        return SyntheticShapes(split, size=size, seed=seed)
    if kind == "voc" and rest:
        from ssdtrt.data.voc import VOCDataset

        return VOCDataset(rest, split, size=size)
    if kind == "coco" and rest:
        from ssdtrt.data.coco import COCODataset

        images, ann = _split_coco(rest)
        return COCODataset(images, ann, size=size)
    raise DatasetError(f"unknown dataset spec {spec!r}; use {SPEC_FORMS}")


__getattr__ = lazy_getattr(__name__, _LAZY_NAMES, _LAZY_MODULES)
