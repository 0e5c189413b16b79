"""Head outputs the postprocess benchmark runs on: a trained model's heads, a stress case, random heads.

Every case is a plain numpy bundle (locs [N, P, 4], logits [N, P, C], priors [P, 4] cx,cy,w,h normalized) so all
implementations start from bit-identical inputs. Cases are built once at the largest batch and sliced (or tiled)
to each batch size, so batch 8 is the first 8 images of batch 32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np

from ssdtrt.core.config import VARIANCES, PostprocessSpec, get_preset

#: Case names in report order.
CASE_NAMES = ("trained", "stress", "random")
#: Background logit offset of the `random` case: N(0, 1) logits alone put ~38% of all (prior, class) scores above
#: 0.01 with 81 classes; +9 on the background leaves ~430 candidates per image (some classes hit by a few priors).
RANDOM_BACKGROUND_SHIFT = 9.0
#: Stress case layout: clusters on a GRID x GRID board, each box inside its own cell (clusters never overlap), and
#: members jittered by at most CLUSTER_JITTER of the box size (members overlap with IoU >= ~0.8). NMS then has real
#: work (hundreds of candidates per class collapse to one per cluster) and no IoU sits near the threshold.
STRESS_GRID = 4
CLUSTER_JITTER = 0.03


@dataclass(frozen=True)
class HeadsCase:
    """One benchmark input: heads of `batch` images plus what torchvision needs (image size in pixels)."""

    name: str
    locs: np.ndarray  # [N, P, 4] float32 offsets
    logits: np.ndarray  # [N, P, C] float32, class 0 = background
    priors_cxcywh: np.ndarray  # [P, 4] float32 normalized
    image_hw: tuple[int, int]  # network input size in pixels (torchvision decodes and clips in pixels)
    settings: PostprocessSpec  # the model's own settings (used with --settings preset)
    variances: tuple[float, ...] = VARIANCES
    description: str = ""

    @property
    def batch(self) -> int:
        return int(self.locs.shape[0])

    @property
    def num_priors(self) -> int:
        return int(self.locs.shape[1])

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[2])


def take_batch(case: HeadsCase, batch: int) -> HeadsCase:
    """The first `batch` images of `case`, tiled when it holds fewer."""
    if batch < 1:
        raise ValueError(f"batch size must be >= 1, got {batch}")
    idx = np.arange(batch) % case.batch
    return replace(case, locs=np.ascontiguousarray(case.locs[idx]), logits=np.ascontiguousarray(case.logits[idx]))


def random_case(batch: int, *, preset: str = "ssd300-resnet50", num_classes: int | None = None, seed: int = 0) -> HeadsCase:
    """N(0, 0.5) offsets and N(0, 1) logits with the background raised by RANDOM_BACKGROUND_SHIFT (few candidates)."""
    spec = get_preset(preset)
    from ssdtrt.core.priors import default_boxes

    priors = default_boxes(spec)
    c = num_classes or spec.default_num_classes
    rng = np.random.default_rng(seed)
    locs = (rng.standard_normal((batch, len(priors), 4), dtype=np.float32) * 0.5).astype(np.float32)
    logits = rng.standard_normal((batch, len(priors), c), dtype=np.float32)
    logits[..., 0] += RANDOM_BACKGROUND_SHIFT
    return HeadsCase(
        "random", locs, logits, priors, (spec.preprocess.height, spec.preprocess.width), spec.postprocess,
        spec.variances, f"{preset} geometry, random-normal heads, background logit +{RANDOM_BACKGROUND_SHIFT:g}",
    )


def stress_case(batch: int, *, preset: str = "ssd300-resnet50", num_classes: int | None = None, seed: int = 0) -> HeadsCase:
    """Many candidates (every class above the threshold on thousands of priors) on clustered boxes.

    Logits are N(0, 1) for every class: with 81 classes ~38% of the scores pass 0.01, so each class hits a top-k
    cap of 400. Each prior regresses onto a jittered copy of the cluster box nearest to it (see STRESS_GRID).
    """
    spec = get_preset(preset)
    from ssdtrt.core.codec import encode
    from ssdtrt.core.priors import default_boxes

    priors = default_boxes(spec)
    c = num_classes or spec.default_num_classes
    rng = np.random.default_rng(seed)
    n_pri = len(priors)
    cell = 1.0 / STRESS_GRID
    gy, gx = np.meshgrid(np.arange(STRESS_GRID), np.arange(STRESS_GRID), indexing="ij")
    locs = np.empty((batch, n_pri, 4), dtype=np.float32)
    for i in range(batch):  # one board per image (a handful of images: not a per-box loop)
        # cluster box: 55-80% of its cell, placed so that it stays inside the cell even after jitter
        wh = rng.uniform(0.55, 0.8, size=(STRESS_GRID * STRESS_GRID, 2)) * cell
        slack = cell - wh * (1 + 2 * CLUSTER_JITTER)
        lo = np.stack([gx.ravel(), gy.ravel()], 1) * cell + wh * CLUSTER_JITTER + rng.uniform(0, 1, wh.shape) * slack
        clusters = np.concatenate([lo, lo + wh], 1)  # [K, 4] xyxy
        centers = (clusters[:, :2] + clusters[:, 2:]) / 2
        nearest = np.argmin(((priors[:, None, :2] - centers[None]) ** 2).sum(-1), axis=1)
        target = clusters[nearest]
        jitter = rng.uniform(-CLUSTER_JITTER, CLUSTER_JITTER, size=(n_pri, 4)) * np.tile(target[:, 2:] - target[:, :2], 2)
        locs[i] = encode((target + jitter).astype(np.float32), priors, spec.variances)
    logits = rng.standard_normal((batch, n_pri, c), dtype=np.float32)
    return HeadsCase(
        "stress", locs, logits, priors, (spec.preprocess.height, spec.preprocess.width), spec.postprocess,
        spec.variances, f"{preset} geometry, N(0,1) logits (every class at the top-k cap), "
        f"{STRESS_GRID * STRESS_GRID} box clusters per image",
    )


def trained_case(
    checkpoint: str | os.PathLike[str], *, data: str = "synthetic", split: str = "val", max_images: int = 32,
    batch_size: int = 8,
) -> HeadsCase:
    """Heads of a trained checkpoint on up to `max_images` validation images (realistic score distributions)."""
    import torch

    from ssdtrt.data import open_dataset
    from ssdtrt.model.checkpoint import load_model
    from ssdtrt.preprocess.host import preprocess_images
    from ssdtrt.core.priors import default_boxes

    model = load_model(checkpoint, "cpu")
    spec = model.spec
    ds = open_dataset(data, split)
    n = min(max_images, len(ds))
    if n == 0:
        from ssdtrt.core.errors import DatasetError

        raise DatasetError(f"dataset {data!r} ({split}) has no images")
    locs_parts, logits_parts = [], []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            images = [ds[i].image for i in range(start, min(n, start + batch_size))]
            locs, logits = model(torch.from_numpy(preprocess_images(images, spec.preprocess)))
            locs_parts.append(locs.numpy())
            logits_parts.append(logits.numpy())
    return HeadsCase(
        "trained", np.concatenate(locs_parts).astype(np.float32), np.concatenate(logits_parts).astype(np.float32),
        default_boxes(spec), (spec.preprocess.height, spec.preprocess.width), spec.postprocess, spec.variances,
        f"{spec.name} checkpoint {os.fspath(checkpoint)} on {n} {data} {split} images",
    )
