"""torch glue: a map-style Dataset over a DetectionDataset + transform, a collate, and a DataLoader factory.

Reproducibility: each sample's augmentation RNG is seeded from (seed, epoch, index) alone, so a run gives the same
batches whatever the number of DataLoader workers or DDP ranks. Call `set_epoch(epoch)` on the TorchDetectionDataset
(and on a DistributedSampler) before each epoch; make_loader does not keep workers alive between epochs, so the new
epoch reaches them when the next iterator starts. torch is imported inside functions only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ssdtrt.data.types import DetectionDataset
from ssdtrt.preprocess.host import normalize_batch

#: (image RGB uint8, boxes_xyxy px, labels, rng) -> (image at network size, boxes_xyxy normalized, labels)
Transform = Callable[
    [np.ndarray, np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray, np.ndarray]
]


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The augmentation RNG of one sample in one epoch."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


class TorchDetectionDataset:
    """torch map-style dataset: item i -> (image float32 [3, H, W] normalized exactly as ssdtrt.preprocess.host,
    boxes float32 [K, 4] normalized xyxy, labels int64 [K]).

    `transform` is a TrainTransform or EvalTransform; it must have a `spec` (Preprocess) attribute, which fixes the
    network size and the normalization. (Subclassing torch.utils.data.Dataset is not required by DataLoader.)
    """

    def __init__(self, dataset: DetectionDataset, transform: Any, seed: int = 0) -> None:
        self.dataset = dataset
        self.transform = transform
        self.spec = transform.spec
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, Any, Any]:
        import torch

        sample = self.dataset[index]
        rng = sample_rng(self.seed, self.epoch, index)
        image, boxes, labels = self.transform(sample.image, sample.boxes_xyxy, sample.labels, rng)
        chw = normalize_batch(image[None], self.spec)[0]
        return (
            torch.from_numpy(chw),
            torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 4)),
            torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64).reshape(-1)),
        )


def collate(batch: Sequence[tuple[Any, Any, Any]]) -> tuple[Any, list[Any], list[Any]]:
    """[(image, boxes, labels)] -> (images [N, 3, H, W], list of boxes [K_i, 4], list of labels [K_i])."""
    import torch

    images, boxes, labels = zip(*batch)
    return torch.stack(images), list(boxes), list(labels)


def _worker_init(_worker_id: int) -> None:
    """One opencv thread per worker: the workers already use the cores."""
    import cv2

    cv2.setNumThreads(1)


def make_loader(
    dataset: DetectionDataset,
    transform: Any,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    sampler: Any = None,
    seed: int = 0,
    *,
    drop_last: bool = False,
) -> Any:
    """A torch DataLoader over TorchDetectionDataset(dataset, transform, seed) with `collate`.

    Shuffling (when no sampler is given) uses a torch.Generator seeded with `seed`, so the order is reproducible.
    Reach the wrapped dataset as `loader.dataset` to call `set_epoch`.
    """
    import torch
    from torch.utils.data import DataLoader

    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(
        TorchDetectionDataset(dataset, transform, seed),  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        drop_last=drop_last,
        generator=generator,
        worker_init_fn=_worker_init if num_workers > 0 else None,
        persistent_workers=False,
        # fork after torch/OpenCV thread pools exist can deadlock the workers; forkserver starts them clean
        multiprocessing_context="forkserver" if num_workers > 0 else None,
    )
