"""Preprocessing stages (`ssdtrt.inference.protocol.Preprocessor`): images → the network input a runner takes.

`HostPreprocess` does everything on the host: resize to the preset's size, (x/255 - mean) / std, the preset's channel
order, NCHW, then the runner's input dtype. An engine that does part of this in its graph (e.g. a uint8 NHWC input)
gets its own stage class with placement "engine", chosen in `preprocessor_for` from a manifest fact — not a new
pipeline. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssdtrt.core.config import Preprocess
from ssdtrt.core.errors import ManifestError
from ssdtrt.core.manifest import Manifest
from ssdtrt.preprocess.host import preprocess_images
from ssdtrt.runtime.base import TensorMeta

__all__ = ["HostPreprocess", "preprocessor_for"]


class HostPreprocess:
    """Resize + normalize + layout on the host (`ssdtrt.preprocess.host.preprocess_images`), cast to `input.dtype`."""

    placement = "host"

    def __init__(self, spec: Preprocess, input_meta: TensorMeta) -> None:
        self.spec = spec
        self.input = input_meta
        self.dtype = np.dtype(input_meta.dtype)

    def __call__(self, images_rgb: Sequence[np.ndarray]) -> np.ndarray:
        if len(images_rgb) == 0:
            raise ValueError("preprocess needs at least one image")
        batch = preprocess_images(images_rgb, self.spec)
        return batch if batch.dtype == self.dtype else batch.astype(self.dtype)


def preprocessor_for(manifest: Manifest, input_meta: TensorMeta) -> HostPreprocess:
    """The preprocessing stage a model needs (today: the host stage for its NCHW float input).

    `input_meta` is the runner's view of the input (its dtype may differ from the manifest's, e.g. fp16)."""
    layout = manifest.inputs[0].layout if manifest.inputs else "NCHW"
    if layout not in (None, "", "NCHW"):
        raise ManifestError(f"input layout {layout!r} has no preprocessing stage yet (expected NCHW)")
    return HostPreprocess(manifest.model_spec.preprocess, input_meta)
