"""ssdtrt — SSD300 from PyTorch to a deployed, measured engine.

The public API is imported lazily (no torch import, no work at import time):

    import ssdtrt
    priors = ssdtrt.default_boxes("ssd300-vgg16")          # numpy [8732, 4] cx, cy, w, h
    model = ssdtrt.load_model("runs/demo/model.pt")          # torch, eval mode
    locs, logits = model(images)                             # [N, P, 4], [N, P, C]
    dets = ssdtrt.postprocess.postprocess(locs, logits, priors)   # list[Detections] (torch; numpy: postprocess_numpy)
"""

from __future__ import annotations

from ssdtrt.core.lazy import lazy_getattr, lazy_names

__version__ = "0.1.0"

_LAZY = lazy_names({
    "ssdtrt.core.priors": ("default_boxes",),
    "ssdtrt.core.detections": ("Detections",),
    "ssdtrt.core.config": ("get_preset", "preset_names", "ModelSpec", "PriorSpec", "PostprocessSpec"),
    "ssdtrt.core.codec": ("encode", "decode"),
    "ssdtrt.model.checkpoint": ("load_model",),
    "ssdtrt.model.ssd": ("build_model",),
    "ssdtrt.core.manifest": ("read_manifest",),
    "ssdtrt.export.onnx_export": ("export_checkpoint",),
    "ssdtrt.inference.detector": ("Detector",),
    "ssdtrt.runtime": ("open_runner",),
    "ssdtrt.core.errors": ("SSDTRTError",),
})

#: subpackages reachable as attributes without an explicit import (`ssdtrt.postprocess.postprocess(...)`)
_SUBPACKAGES = ("postprocess",)

__all__ = sorted([*_LAZY, *_SUBPACKAGES])
__getattr__ = lazy_getattr(__name__, _LAZY, _SUBPACKAGES)
