"""Engine builders: TensorRT `.plan` (NVIDIA GPUs) and OpenVINO IR (CPUs), each with a manifest beside it.

    from ssdtrt.engines import build_engine
    result = build_engine("export/model_raw.onnx", backend="openvino", precision="bf16")

The backend modules import tensorrt / openvino lazily; a host without one gets BackendUnavailableError (exit 2).
"""

from __future__ import annotations

import os
from typing import Any

ENGINE_BACKENDS = ("tensorrt", "openvino")


def build_engine(onnx_path: str | os.PathLike[str], *, backend: str = "tensorrt", **options: Any) -> Any:
    """Dispatch to `build_tensorrt` or `build_openvino` (options as those functions take); an EngineBuildResult."""
    from ssdtrt.core.errors import EngineBuildError

    if backend == "tensorrt":
        from ssdtrt.engines.tensorrt_builder import build_tensorrt

        return build_tensorrt(onnx_path, **options)
    if backend == "openvino":
        from ssdtrt.engines.openvino_builder import build_openvino

        return build_openvino(onnx_path, **options)
    raise EngineBuildError(f"unknown engine backend {backend!r}; choose one of: {', '.join(ENGINE_BACKENDS)}")
