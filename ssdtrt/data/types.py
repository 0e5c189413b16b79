"""The record every dataset yields and the base class every reader implements.

Box convention (all readers, all transforms): continuous pixel coordinates where pixel column i covers [i, i+1).
A box that covers pixel columns 3..7 inclusive is x1=3, x2=8, so width = x2 - x1 = number of pixels, a horizontal
flip maps x1 -> W - x2, and dividing by (W, H) gives the normalized box the network sees.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass
class Sample:
    """One annotated image.

    image: HxWx3 uint8 RGB. boxes_xyxy: float32 [K, 4] in pixels of `image`. labels: int64 [K] in 1..C-1
    (label L names class_names[L-1]). difficult: bool [K] (VOC `difficult`, COCO `iscrowd`; evaluation ignores them).
    image_id: the dataset's id (index for synthetic/VOC, the COCO image id for COCO). path: file path or None.
    """

    image: np.ndarray
    boxes_xyxy: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    image_id: int
    path: str | None = None

    def __post_init__(self) -> None:
        self.boxes_xyxy = np.asarray(self.boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.difficult = np.asarray(self.difficult, dtype=bool).reshape(-1)
        k = self.boxes_xyxy.shape[0]
        if self.labels.shape[0] != k or self.difficult.shape[0] != k:
            raise ValueError(f"Sample: {k} boxes but {self.labels.shape[0]} labels, {self.difficult.shape[0]} flags")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


class DetectionDataset(ABC):
    """Random-access detection dataset. `class_names` excludes the background (label 0)."""

    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """Classes including the background, i.e. the width of the classifier head."""
        return len(self.class_names) + 1

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, index: int) -> Sample: ...

    def _check_index(self, index: int) -> int:
        """Python-style index check (negative indices allowed) so iteration with `for s in ds` stops."""
        n = len(self)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} images")
        return i
