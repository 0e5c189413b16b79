"""The FP32 graph that precision studies start from: a checkpoint exported in memory, or an FP32 ONNX + manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssdtrt.core.errors import ExportError

if TYPE_CHECKING:
    import onnx

    from ssdtrt.core.manifest import Manifest


@dataclass
class Fp32Source:
    """FP32 graph, its manifest (preset, classes, postprocess settings), and the torch model when there is one."""

    proto: onnx.ModelProto
    manifest: Manifest
    model: Any = None


def load_fp32_source(path: str | Path) -> Fp32Source:
    """A `.pt` checkpoint → its raw export (dynamic batch, in memory); an `.onnx` → itself if its manifest says fp32."""
    import onnx

    path = Path(path)
    if path.suffix == ".onnx":
        from ssdtrt.core.manifest import read_manifest

        manifest = read_manifest(path)
        if manifest.precision != "fp32":
            raise ExportError(f"{path}: precision {manifest.precision}; sensitivity starts from an FP32 graph")
        return Fp32Source(onnx.load(str(path)), manifest)
    from ssdtrt.export.onnx_export import build_manifest, export_body
    from ssdtrt.model.checkpoint import load_model

    model = load_model(path, "cpu")
    proto = export_body(model, mode="raw", dynamic_batch=True)
    manifest = build_manifest(proto, Path(f"{path.stem}_raw.onnx"), model, mode="raw", precision="fp32",
                              postprocess=model.spec.postprocess, source={"checkpoint": str(path)})
    return Fp32Source(proto, manifest, model)
