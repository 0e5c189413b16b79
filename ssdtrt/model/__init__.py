"""The PyTorch side: backbones, the SSD network, checkpoints and foreign-weights import (names loaded lazily)."""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "SSD": "ssdtrt.model.ssd",
    "build_model": "ssdtrt.model.ssd",
    "build_backbone": "ssdtrt.model.backbones",
    "save_checkpoint": "ssdtrt.model.checkpoint",
    "load_checkpoint": "ssdtrt.model.checkpoint",
    "load_model": "ssdtrt.model.checkpoint",
    "import_weights": "ssdtrt.model.weights",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ssdtrt.model' has no attribute {name!r}")
