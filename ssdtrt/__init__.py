"""ssdtrt — SSD300 from PyTorch to a deployed, measured engine.

The public API is imported lazily (no torch import, no work at import time):

    import ssdtrt
    priors = ssdtrt.default_boxes("ssd300-vgg16")          # numpy [8732, 4] cx, cy, w, h
    model = ssdtrt.load_model("runs/demo/model.pt")          # torch, eval mode
    locs, logits = model(images)                             # [N, P, 4], [N, P, C]
    dets = ssdtrt.postprocess(locs, logits, priors)          # list[Detections]
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "default_boxes": "ssdtrt.priors",
    "postprocess": "ssdtrt.postprocess",
    "Detections": "ssdtrt.detections",
    "get_preset": "ssdtrt.config",
    "preset_names": "ssdtrt.config",
    "ModelSpec": "ssdtrt.config",
    "PriorSpec": "ssdtrt.config",
    "PostprocessSpec": "ssdtrt.config",
    "encode": "ssdtrt.codec",
    "decode": "ssdtrt.codec",
    "load_model": "ssdtrt.model.checkpoint",
    "build_model": "ssdtrt.model.ssd",
    "read_manifest": "ssdtrt.manifest",
    "export_checkpoint": "ssdtrt.export.onnx_export",
    "Detector": "ssdtrt.pipeline",
    "open_runner": "ssdtrt.runtime",
    "SSDTRTError": "ssdtrt.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ssdtrt' has no attribute {name!r}")
