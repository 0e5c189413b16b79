"""Preprocessing stages (`ssdtrt.inference.protocol.Preprocessor`): images → the network input a runner takes.

`HostPreprocess` does everything on the host: resize to the preset's size, (x/255 - mean) / std, the preset's channel
order, NCHW, then the runner's input dtype. `EnginePreprocess` (placement "engine") serves a model whose graph takes
the decoded uint8 NHWC RGB image at network size (manifest `input_format` "uint8-nhwc"): the host only resizes.
`preprocessor_for` picks one from the manifest. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssdtrt.core.config import Preprocess
from ssdtrt.core.errors import ManifestError
from ssdtrt.core.manifest import Manifest
from ssdtrt.preprocess.host import preprocess_images, resize_batch
from ssdtrt.runtime.base import TensorMeta

__all__ = ["EnginePreprocess", "HostPreprocess", "preprocessor_for"]


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


class EnginePreprocess:
    """For a model whose graph takes the decoded image (`input_format` "uint8-nhwc": an ONNX exported with
    `--input uint8-nhwc`, an OpenVINO IR built with it): only the resize to the network size stays on the host
    (`resize_batch`, as the host stage resizes); type, channel order, normalization and layout are the graph's."""

    placement = "engine"

    def __init__(self, spec: Preprocess, input_meta: TensorMeta) -> None:
        self.spec = spec
        self.input = input_meta
        if np.dtype(input_meta.dtype) != np.uint8:
            raise ManifestError(f"a uint8-nhwc model's input {input_meta.name!r} is {input_meta.dtype}, not uint8")

    def __call__(self, images_rgb: Sequence[np.ndarray]) -> np.ndarray:
        if len(images_rgb) == 0:
            raise ValueError("preprocess needs at least one image")
        return resize_batch([np.asarray(img, dtype=np.uint8) for img in images_rgb], self.spec)


def preprocessor_for(manifest: Manifest, input_meta: TensorMeta) -> HostPreprocess | EnginePreprocess:
    """The preprocessing stage a model needs: from the manifest's `input_format` — "float32-nchw" (the host
    normalizes: `HostPreprocess`) or "uint8-nhwc" (the graph does: `EnginePreprocess`).

    `input_meta` is the runner's view of the input (its dtype may differ from the manifest's, e.g. fp16)."""
    if manifest.input_format == "uint8-nhwc":
        return EnginePreprocess(manifest.model_spec.preprocess, input_meta)
    layout = manifest.inputs[0].layout if manifest.inputs else "NCHW"
    if layout not in (None, "", "NCHW"):
        raise ManifestError(f"input layout {layout!r} has no preprocessing stage (expected NCHW)")
    return HostPreprocess(manifest.model_spec.preprocess, input_meta)
