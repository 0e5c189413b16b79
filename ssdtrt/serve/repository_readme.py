"""The README.md written into an `ssdtrt export-triton` repository: the contract and how to deploy it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssdtrt.core.manifest import Manifest


def _trtexec(manifest: Manifest, det: str, max_batch: int) -> str:
    name = manifest.inputs[0].name
    chw = "x".join(str(d) for d in manifest.inputs[0].shape[1:])
    opt = max(1, max_batch // 2)
    return (
        f"trtexec --onnx={det}/model.onnx --saveEngine={det}/1/model.plan \\\n"
        f"        --minShapes={name}:1x{chw} --optShapes={name}:{opt}x{chw} --maxShapes={name}:{max_batch}x{chw}"
    )


def repository_readme(model: Path, manifest: Manifest, s: Any, names: dict[str, str], k: int) -> str:
    """Markdown for the repository root (not read by Triton)."""
    det = names["det"]
    lines = [
        f"# Triton model repository for `{model.name}` (ssdtrt export-triton, detector: {s.detector})",
        "",
        f"Ensemble `{names['ens']}`: `{names['pre']}` (python: decode + resize + normalize) → `{det}` "
        f"({s.detector}) → `{names['post']}` (python: decode boxes, per-class NMS, pixels of the original image).",
        "",
        "## Contract",
        "",
        "| tensor | type | dims (no batch dim) | meaning |",
        "| --- | --- | --- | --- |",
        "| input `image` | BYTES | [1] | one encoded image (JPEG/PNG/BMP/WebP) per batch row |",
        "| output `num_detections` | INT32 | [1] | valid rows n ≤ K |",
        f"| output `boxes` | FP32 | [{k}, 4] | xyxy in pixels of the original image, rows ≥ n are 0 |",
        f"| output `scores` | FP32 | [{k}] | descending |",
        f"| output `labels` | INT32 | [{k}] | class ids 1..{manifest.num_classes - 1} (name of label L = class_names[L-1]) |",
        "",
        f"Class names: parameter `class_names` of `{names['ens']}` (JSON list). A request whose image does not decode "
        "fails alone with a message naming the problem; the other requests of its batch are answered.",
        "",
        "## Python environment of the python models",
        "",
        "The python models import `ssdtrt` (torch-free parts: numpy, opencv-python-headless"
        + (", onnxruntime or openvino" if s.detector == "python" else "")
        + "). In an NVIDIA Triton container: `pip install ssdtrt` into the container's python (or pack an environment "
        "and point the models' `EXECUTION_ENV_PATH` parameter at it). The parameter `ssdtrt_path` "
        f"(`{s.ssdtrt_path or 'empty'}`) is put on `sys.path` only when that folder exists. A python backend built "
        "with pybind11 < 2.12 (tritonserver 2.51 and older, e.g. the one PyTriton 0.7 bundles) garbles tensors under "
        "numpy 2: there, give the python models an environment with numpy < 2 (`ssdtrt serve-env` builds one).",
        "",
        "## Run",
        "",
        "```",
        "docker run --rm -p8000:8000 -p8001:8001 -p8002:8002 -v $PWD:/models nvcr.io/nvidia/tritonserver:<xx.yy>-py3 \\",
        "    tritonserver --model-repository=/models",
        "```",
    ]
    if s.detector == "tensorrt":
        lines += [
            "",
            "## Build the TensorRT plan inside the matching Triton container",
            "",
            "A plan only loads on the TensorRT version (and GPU architecture) that built it, so build it with the "
            "`trtexec` of the same `nvcr.io/nvidia/tritonserver:<xx.yy>-py3` image that will serve it:",
            "",
            "```",
            _trtexec(manifest, det, s.max_batch_size),
            "```",
            "",
            f"`--maxShapes` must equal `max_batch_size` ({s.max_batch_size}) of `{det}/config.pbtxt`.",
        ]
    return "\n".join(lines) + "\n"
