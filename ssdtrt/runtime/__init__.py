"""Runners for every backend behind one interface (`ssdtrt.runtime.base.Runner`), and the factory picking one.

    from ssdtrt.runtime import open_runner
    with open_runner("engines/model.xml") as runner:            # .pt/.pth, .onnx, .xml, .plan/.engine, or a .json
        outputs = runner.infer({"images": batch})
    runner = open_runner("engines/model.xml", mode="throughput")  # several requests at once (infer_async)

Nothing heavy is imported here: each backend (torch, onnxruntime, openvino, tensorrt) loads when its runner does.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from ssdtrt.core.errors import ManifestError
from ssdtrt.runtime.base import Runner, TensorMeta

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")
BACKEND_ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "ov": "openvino", "trt": "tensorrt", "pytorch": "torch"}
#: artifact kind (manifest) -> backends that can run it, default first
KIND_BACKENDS = {
    "checkpoint": ("torch",),
    "onnx": ("onnxruntime", "openvino"),
    "openvino": ("openvino",),
    "tensorrt": ("tensorrt",),
}
SUFFIX_KINDS = {".pt": "checkpoint", ".pth": "checkpoint", ".onnx": "onnx", ".xml": "openvino", ".plan": "tensorrt", ".engine": "tensorrt"}

#: How a runner is tuned: one request at a time with every core, or several requests in flight at once.
MODES = ("latency", "throughput")

__all__ = ["BACKENDS", "MODES", "Runner", "TensorMeta", "available_backends", "backend_for", "open_runner", "runner_class"]


def normalize_backend(backend: str | None) -> str | None:
    if backend is None:
        return None
    name = BACKEND_ALIASES.get(backend.lower(), backend.lower())
    if name not in BACKENDS:
        raise ManifestError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    return name


def artifact_and_kind(path: Path) -> tuple[Path, str]:
    """Resolve a manifest (.json) to its artifact; the kind from the suffix, else from the manifest beside it."""
    from ssdtrt.core.manifest import manifest_path_for, read_manifest

    if path.suffix == ".json":
        manifest = read_manifest(path)
        return path.parent / manifest.artifact, manifest.kind
    if path.suffix in SUFFIX_KINDS:
        return path, SUFFIX_KINDS[path.suffix]
    if manifest_path_for(path).is_file():
        return path, read_manifest(path).kind
    raise ManifestError(
        f"{path}: unknown model format (expected .pt/.pth checkpoint, .onnx, OpenVINO .xml or TensorRT .plan/.engine)"
    )


def backend_for(path: str | os.PathLike[str], backend: str | None = None) -> tuple[Path, str]:
    """(artifact path, backend name) that `open_runner` would use."""
    artifact, kind = artifact_and_kind(Path(path))
    allowed = KIND_BACKENDS[kind]
    chosen = normalize_backend(backend) or allowed[0]
    if chosen not in allowed:
        hint = " (build an engine first: ssdtrt build-engine MODEL.onnx --backend tensorrt)" if chosen == "tensorrt" else ""
        raise ManifestError(f"{artifact}: a {kind} artifact runs with {' or '.join(allowed)}, not {chosen}{hint}")
    return artifact, chosen


def open_runner(
    path: str | os.PathLike[str],
    backend: str | None = None,
    *,
    mode: str = "latency",
    requests: int | None = None,
    **options: Any,
) -> Runner:
    """A runner for a checkpoint, ONNX, OpenVINO IR or TensorRT plan (not yet activated).

    mode: "latency" (the backend's defaults) or "throughput" (the runner class's `throughput_options`: OpenVINO's
    THROUGHPUT hint, ONNX Runtime's concurrent runs; nothing for torch / TensorRT, which overlap requests as they
    are); `requests`: requests in flight in throughput mode (None: the backend's optimal number).
    `options` go to the runner and win over the mode's: torch (device, autocast_bf16), onnxruntime (providers,
    intra_op_threads, inter_op_threads, performance_mode, num_requests), openvino (device, precision_hint,
    num_threads, num_streams, performance_mode, num_requests), tensorrt (buffers, device_index, in_flight);
    every backend: `verify_hash` (default True: the artifact's sha256 is checked against its manifest on activate).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    artifact, chosen = backend_for(path, backend)
    if not artifact.exists():
        raise ManifestError(f"{artifact}: no such file")
    verify_hash = bool(options.pop("verify_hash", True))
    cls = runner_class(chosen)
    if mode == "throughput":
        options = {**cls.throughput_options(requests), **options}
    runner = cls(artifact, **options)
    runner.verify_hash = verify_hash
    return runner


def runner_class(backend: str) -> type[Runner]:
    """The Runner class of a backend name (imports only that backend's runner module)."""
    chosen = normalize_backend(backend)
    if chosen == "torch":
        from ssdtrt.runtime.torch_runner import TorchRunner

        return TorchRunner
    if chosen == "onnxruntime":
        from ssdtrt.runtime.onnxruntime_runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner
    if chosen == "openvino":
        from ssdtrt.runtime.openvino_runner import OpenVINORunner

        return OpenVINORunner
    from ssdtrt.runtime.tensorrt_runner import TensorRTRunner

    return TensorRTRunner


def available_backends() -> dict[str, str | None]:
    """Backend name -> None when usable here, else the reason (cheap: looks for packages, does not import them)."""
    from ssdtrt.runtime.cuda_buffers import TRT_INSTALL_HINT, nvidia_driver_present

    def missing(module: str, hint: str) -> str | None:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        return None if found else f"{module} is not installed ({hint})"

    out: dict[str, str | None] = {
        "torch": missing("torch", "pip install torch"),
        "onnxruntime": missing("onnxruntime", "pip install onnxruntime"),
        "openvino": missing("openvino", 'pip install "ssdtrt[openvino]"'),
    }
    reason = missing("tensorrt", TRT_INSTALL_HINT)
    if reason is None and missing("cuda.bindings", TRT_INSTALL_HINT) and missing("cuda.cudart", TRT_INSTALL_HINT):
        reason = f"cuda-python is not installed ({TRT_INSTALL_HINT})"
    if reason is None and not nvidia_driver_present():
        reason = "no NVIDIA GPU / driver on this machine"
    out["tensorrt"] = reason
    return out
