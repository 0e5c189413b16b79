"""The PyTorch side: backbones, the SSD network, checkpoints and foreign-weights import (names loaded lazily)."""

from __future__ import annotations

from ssdtrt.core.lazy import lazy_getattr, lazy_names

_LAZY = lazy_names({
    "ssdtrt.model.ssd": ("SSD", "build_model"),
    "ssdtrt.model.backbones": ("build_backbone",),
    "ssdtrt.model.checkpoint": ("save_checkpoint", "load_checkpoint", "load_model"),
    "ssdtrt.model.weights": ("import_weights",),
})

__all__ = sorted(_LAZY)
__getattr__ = lazy_getattr(__name__, _LAZY)
