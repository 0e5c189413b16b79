"""`Detections`: one image's boxes, scores and labels (numpy arrays or torch tensors; torch is never imported here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _to_numpy(x: Any) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.detach().cpu().numpy()


@dataclass
class Detections:
    """Detections of one image, sorted by score (descending).

    boxes: [K, 4] xyxy — normalized [0, 1] out of `postprocess`, pixels after `to_pixels`.
    labels: [K] int64 in 1..C-1 (0 is background and never appears). class_names: index label-1.
    """

    boxes: Any
    scores: Any
    labels: Any
    class_names: tuple[str, ...] | None = field(default=None)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def numpy(self) -> Detections:
        return Detections(_to_numpy(self.boxes), _to_numpy(self.scores), _to_numpy(self.labels), self.class_names)

    def to_pixels(self, width: int, height: int) -> Detections:
        """Boxes scaled from normalized to pixel xyxy of an image of `width` x `height`."""
        d = self.numpy()
        scale = np.asarray([width, height, width, height], dtype=np.float32)
        return Detections(d.boxes * scale, d.scores, d.labels, self.class_names)

    def names(self) -> list[str]:
        """Class name of every detection (str(label) when no names are attached)."""
        labels = _to_numpy(self.labels)
        if self.class_names is None:
            return [str(int(v)) for v in labels]
        names = np.asarray(self.class_names, dtype=object)
        return list(names[labels - 1])
