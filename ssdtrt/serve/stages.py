"""The model's stages as the python-backend models of a Triton ensemble run them (no second pipeline).

`stage_detector(manifest)` gives the `ModelStages` a `Detector` is built from — the very `preprocess` and
`postprocess` that `ssdtrt detect` uses — without a runner: the network runs in another Triton model (TensorRT,
ONNX Runtime, OpenVINO or ssdtrt's own runner). Torch-free.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from ssdtrt.core.manifest import Manifest
from ssdtrt.inference.stages import ModelStages
from ssdtrt.postprocess.settings import override_values, unappliable_message


def stage_detector(manifest_path: str | Path, settings: dict[str, Any] | None = None) -> ModelStages:
    """Pre/postprocess of the model a manifest describes, with the repository's postprocess overrides
    (`ssdtrt.postprocess.settings.OVERRIDE_KEYS`; other keys are ignored)."""
    data = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    stages = ModelStages(Manifest.from_dict(data, where=str(manifest_path)), overrides=override_values(settings or {}))
    if stages.problems:
        warnings.warn(unappliable_message(stages.problems), stacklevel=2)
    return stages
