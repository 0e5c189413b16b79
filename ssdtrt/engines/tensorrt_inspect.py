"""Per-layer precisions of a built TensorRT engine (IEngineInspector), e.g. to see which layers of an INT8 engine
really run in INT8.

The engine must be built with ProfilingVerbosity.DETAILED (`build_tensorrt(..., detailed_profile=True)`); otherwise
TensorRT reports layer names only (NvInferRuntime.h, IEngineInspector). The JSON schema differs by major: 10.x puts
"Format/Datatype" on each layer input/output, 11.x splits it into "Format" and "DataType" (TensorRT 11 migration
guide, "Migrating IEngineInspector Usage"); `parse_engine_information` reads both.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssdtrt.core.errors import IncompatibleEngineError

# substrings of TensorRT's data-type / format strings -> precision label, most specific first
_PRECISIONS = (("INT8", "int8"), ("FP8", "fp8"), ("INT4", "int4"), ("BF16", "bf16"), ("FP16", "fp16"),
               ("HALF", "fp16"), ("INT64", "int64"), ("INT32", "int32"), ("BOOL", "bool"), ("FP32", "fp32"),
               ("FLOAT", "fp32"))


@dataclass(frozen=True)
class LayerPrecision:
    name: str
    layer_type: str
    input_precisions: tuple[str, ...]
    output_precisions: tuple[str, ...]


def precision_label(datatype: str) -> str:
    """"Int8 NC/32 format" / "Half" / "Row major linear FP32 format (kLINEAR)" -> int8 / fp16 / fp32 ("?" unknown)."""
    upper = str(datatype).upper()
    for key, label in _PRECISIONS:
        if key in upper:
            return label
    return "?"


def _tensor_precisions(entries: Any) -> tuple[str, ...]:
    out = []
    for entry in entries or []:
        if isinstance(entry, dict):
            out.append(precision_label(entry.get("DataType") or entry.get("Format/Datatype") or ""))
    return tuple(out)


def parse_engine_information(info: dict[str, Any]) -> list[LayerPrecision]:
    """Layers from `IEngineInspector.get_engine_information(LayerInformationFormat.JSON)`, parsed."""
    layers = []
    for layer in info.get("Layers", []):
        if isinstance(layer, str):  # built without DETAILED verbosity: names only
            layers.append(LayerPrecision(layer, "?", (), ()))
            continue
        layers.append(LayerPrecision(
            str(layer.get("Name", "?")), str(layer.get("LayerType", "?")),
            _tensor_precisions(layer.get("Inputs")), _tensor_precisions(layer.get("Outputs")),
        ))
    return layers


def precision_summary(layers: list[LayerPrecision]) -> dict[str, int]:
    """Layer count per precision of each layer's first output ("?" for name-only information)."""
    return dict(Counter(layer.output_precisions[0] if layer.output_precisions else "?" for layer in layers))


def inspect_engine(plan_path: str | os.PathLike[str], *, device_index: int = 0) -> list[LayerPrecision]:
    """Deserialize `plan_path` on GPU `device_index` and list its layers with their precisions."""
    from ssdtrt.engines.tensorrt_builder import make_device_current
    from ssdtrt.runtime.tensorrt_runner import import_tensorrt

    trt = import_tensorrt()
    make_device_current(device_index)
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(plan_path).read_bytes())
    if engine is None:
        raise IncompatibleEngineError(f"{plan_path}: TensorRT {trt.__version__} could not deserialize it")
    # Polygraphy backend/trt/util.py: engine.create_engine_inspector(), then get_*_information(LayerInformationFormat.JSON)
    inspector = engine.create_engine_inspector()
    return parse_engine_information(json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON)))
