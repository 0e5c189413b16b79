"""The sidecar JSON every exported model or engine carries (`<name>.json` beside `<name>.onnx|.xml|.plan`).

A runtime needs nothing else: preset spec (priors, preprocess, postprocess defaults), classes, export mode, I/O
names and layouts, precision, source hashes, tool versions; engines add backend details. Torch-free.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from ssdtrt.config import ModelSpec
from ssdtrt.errors import ManifestError
from ssdtrt.fileio import atomic_write_json

MANIFEST_FORMAT = "ssdtrt-manifest"
MANIFEST_VERSION = 1
ARTIFACT_KINDS = ("onnx", "openvino", "tensorrt", "checkpoint")
EXPORT_MODES = ("raw", "decoded", "nms")
PRECISIONS = ("fp32", "fp16", "int8", "bf16")


@dataclass
class TensorInfo:
    name: str
    shape: list[int | str]  # str = a named dynamic dimension, e.g. "batch"
    dtype: str  # numpy dtype name: float32, float16, int32, int64
    layout: str = ""  # e.g. "NCHW", "NPC" (batch, priors, classes)


@dataclass
class Manifest:
    artifact: str  # file name of the model/engine, relative to the manifest
    kind: str  # onnx | openvino | tensorrt
    spec: dict[str, Any]  # ModelSpec.to_dict()
    num_classes: int
    class_names: list[str]  # without background; label L has name class_names[L - 1]
    export_mode: str  # raw | decoded | nms
    precision: str  # fp32 | fp16 | int8 | bf16
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    postprocess: dict[str, Any] = field(default_factory=dict)  # settings baked into an `nms` graph
    source: dict[str, Any] = field(default_factory=dict)  # {"checkpoint": path, "sha256": ..., "onnx": ...}
    tools: dict[str, str] = field(default_factory=dict)  # library versions that made the artifact
    engine: dict[str, Any] = field(default_factory=dict)  # backend details (TensorRT version, GPU, profile, ...)
    format: str = MANIFEST_FORMAT
    version: int = MANIFEST_VERSION

    @property
    def model_spec(self) -> ModelSpec:
        return ModelSpec.from_dict(self.spec)

    @property
    def dynamic_batch(self) -> bool:
        return any(isinstance(t.shape[0], str) for t in self.inputs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any], where: str = "manifest") -> Manifest:
        if d.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"{where}: not an ssdtrt manifest (format={d.get('format')!r})")
        try:
            fields = dict(d)
            fields["inputs"] = [TensorInfo(**t) for t in d["inputs"]]
            fields["outputs"] = [TensorInfo(**t) for t in d["outputs"]]
            m = Manifest(**fields)
        except (KeyError, TypeError) as err:
            raise ManifestError(f"{where}: malformed manifest ({err})") from None
        if m.kind not in ARTIFACT_KINDS or m.export_mode not in EXPORT_MODES or m.precision not in PRECISIONS:
            raise ManifestError(f"{where}: unknown kind/export_mode/precision {m.kind}/{m.export_mode}/{m.precision}")
        if len(m.class_names) != m.num_classes - 1:
            raise ManifestError(
                f"{where}: {len(m.class_names)} class names but num_classes={m.num_classes} (expected num_classes - 1)"
            )
        return m


def manifest_path_for(artifact: str | Path) -> Path:
    """`export/model.onnx` → `export/model.json` (an OpenVINO `model.xml` likewise)."""
    return Path(artifact).with_suffix(".json")


def write_manifest(artifact: str | Path, manifest: Manifest) -> Path:
    return atomic_write_json(manifest_path_for(artifact), manifest.to_dict())


def read_manifest(artifact_or_manifest: str | Path) -> Manifest:
    """The manifest of an artifact (or the manifest file itself)."""
    path = Path(artifact_or_manifest)
    path = path if path.suffix == ".json" else manifest_path_for(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (every ssdtrt artifact has a <name>.json beside it)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ManifestError(f"{path}: unreadable manifest ({err})") from None
    return Manifest.from_dict(data, where=str(path))


def tool_versions(*packages: str) -> dict[str, str]:
    """Installed versions of `packages` plus python and ssdtrt (missing packages are skipped)."""
    out = {"python": platform.python_version()}
    for name in ("ssdtrt", *packages):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
