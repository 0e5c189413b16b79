"""Default boxes (priors) from a PriorSpec — the single source of truth for loss, export and runtime.

Order of the P axis: feature maps largest to smallest; inside a map row-major over cells (y, then x); inside a
cell the shapes in seed order: s_k, sqrt(s_k s_k+1), then per aspect ratio a: (s√a, s/√a), (s/√a, s√a).
This is the Caffe / SSD-TensorFlow / torchvision order.
"""

from __future__ import annotations

import math

import numpy as np

from ssdtrt.core.config import ModelSpec, PriorSpec, resolve_spec


def cell_shapes_wh(spec: PriorSpec, map_index: int) -> np.ndarray:
    """Box shapes (w, h) of one cell of feature map `map_index`, normalized, in seed order, float64."""
    s_k = spec.sizes_px[map_index] / spec.image_size
    s_next = spec.sizes_px[map_index + 1] / spec.image_size
    s_prime = math.sqrt(s_k * s_next)
    shapes = [(s_k, s_k), (s_prime, s_prime)]
    for ratio in spec.aspect_ratios[map_index]:
        r = math.sqrt(ratio)
        shapes += [(s_k * r, s_k / r), (s_k / r, s_k * r)]
    return np.asarray(shapes, dtype=np.float64)


def priors_cxcywh(spec: PriorSpec) -> np.ndarray:
    """All priors [P, 4] as (cx, cy, w, h) float32, clipped per `spec.clip`."""
    per_map = []
    for k, fmap in enumerate(spec.feature_maps):
        centers_1d = (np.arange(fmap, dtype=np.float64) + spec.offset) * spec.steps[k] / spec.image_size
        cy, cx = np.meshgrid(centers_1d, centers_1d, indexing="ij")  # row-major over cells
        wh = cell_shapes_wh(spec, k)
        if spec.clip == "wh":
            wh = np.clip(wh, 0.0, 1.0)
        n_cells, n_shapes = fmap * fmap, len(wh)
        centers = np.stack([cx.ravel(), cy.ravel()], axis=1)  # [cells, 2]
        boxes = np.concatenate(
            [np.repeat(centers, n_shapes, axis=0), np.tile(wh, (n_cells, 1))], axis=1
        )  # [cells * shapes, 4], shapes vary fastest
        per_map.append(boxes)
    priors = np.concatenate(per_map, axis=0)
    if spec.clip == "all":
        priors = np.clip(priors, 0.0, 1.0)
    return priors.astype(np.float32)


def default_boxes(preset: str | ModelSpec) -> np.ndarray:
    """Priors of a preset (name or ModelSpec): float32 [P, 4] (cx, cy, w, h) in [0, 1] (see the clip mode)."""
    return priors_cxcywh(resolve_spec(preset).priors)
