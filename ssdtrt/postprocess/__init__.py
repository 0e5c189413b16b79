"""Postprocessing stages: network outputs → Detections.

`host_numpy` (torch-free) and `host_torch` run on the host or a torch device; `onnx_nms` builds the same work into an
ONNX graph tail (placement "engine"). `stages` wraps each placement as a `Postprocessor` stage (host-numpy,
host-torch, engine) and picks one per export mode; `settings` holds the override keys and the constants all of them
share.

    from ssdtrt.postprocess import postprocess, postprocess_numpy   # the torch and numpy functions, lazily
"""

from __future__ import annotations

from ssdtrt.core.lazy import lazy_getattr, lazy_names

_LAZY = lazy_names({"ssdtrt.postprocess.host_torch": ("postprocess",),
                    "ssdtrt.postprocess.host_numpy": ("postprocess_numpy",)})
__all__ = sorted(_LAZY)
__getattr__ = lazy_getattr(__name__, _LAZY)
