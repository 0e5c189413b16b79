"""ssdtrt — SSD300 from PyTorch to a deployed, measured engine.

The public API is imported lazily (no torch import, no work at import time):

    import ssdtrt
    priors = ssdtrt.default_boxes("ssd300-vgg16")          # numpy [8732, 4] cx, cy, w, h
    model = ssdtrt.load_model("runs/demo/model.pt")          # torch, eval mode
    locs, logits = model(images)                             # [N, P, 4], [N, P, C]
    dets = ssdtrt.postprocess.host_torch(locs, logits, priors)          # list[Detections]
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "default_boxes": "ssdtrt.core.priors",
    "postprocess": "ssdtrt.postprocess.host_torch",
    "Detections": "ssdtrt.core.detections",
    "get_preset": "ssdtrt.core.config",
    "preset_names": "ssdtrt.core.config",
    "ModelSpec": "ssdtrt.core.config",
    "PriorSpec": "ssdtrt.core.config",
    "PostprocessSpec": "ssdtrt.core.config",
    "encode": "ssdtrt.core.codec",
    "decode": "ssdtrt.core.codec",
    "load_model": "ssdtrt.model.checkpoint",
    "build_model": "ssdtrt.model.ssd",
    "read_manifest": "ssdtrt.core.manifest",
    "export_checkpoint": "ssdtrt.export.onnx_export",
    "Detector": "ssdtrt.inference.detector",
    "open_runner": "ssdtrt.runtime",
    "SSDTRTError": "ssdtrt.core.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ssdtrt' has no attribute {name!r}")
