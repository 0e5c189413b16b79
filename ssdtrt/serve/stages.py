"""The Detector's stages as the python-backend models of a Triton ensemble run them (no second pipeline).

`stage_detector(manifest)` is a `Detector` over a `ManifestRunner`: its `preprocess` and `postprocess` are the very
methods `ssdtrt detect` uses, while the network runs in another Triton model (TensorRT, ONNX Runtime, OpenVINO or
ssdtrt's own runner). Torch-free.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ssdtrt.core.errors import ManifestError
from ssdtrt.core.manifest import Manifest
from ssdtrt.runtime.base import Runner, TensorMeta


class ManifestRunner(Runner):
    """A Runner that knows the model's I/O from its manifest but runs nothing (the network lives elsewhere)."""

    backend = "manifest"

    def _activate(self) -> None:
        return None

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise ManifestError("a ManifestRunner only describes a model; the network runs in another Triton model")

    def input_metadata(self) -> dict[str, TensorMeta]:
        return {t.name: TensorMeta(t.name, np.dtype(t.dtype), tuple(t.shape)) for t in self.manifest.inputs}


def stage_detector(manifest_path: str | Path, settings: dict[str, Any] | None = None) -> Any:
    """A Detector for preprocess/postprocess only, with the repository's postprocess overrides."""
    from ssdtrt.inference.detector import Detector

    data = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    runner = ManifestRunner(Manifest.from_dict(data, where=str(manifest_path)))
    overrides = {k: v for k, v in (settings or {}).items() if k in ("score_threshold", "iou_threshold", "max_detections")}
    return Detector(runner, **overrides)
