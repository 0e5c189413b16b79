"""The sidecar JSON every exported model or engine carries (`<name>.json` beside `<name>.onnx|.xml|.plan`).

A runtime needs nothing else: preset spec (priors, preprocess, postprocess defaults), classes, export mode, I/O
names and layouts, precision, source hashes, tool versions; engines add backend details. Torch-free.

Integrity: `artifact_sha256` / `artifact_size` describe the artifact file (`.onnx`, `.plan`, or an OpenVINO `.xml`);
an OpenVINO IR's weights file (`.bin`) is recorded as `weights_sha256` / `weights_size`, and both files are checked.
`verify_artifact` checks the size always (free) and the sha256 unless told not to (runners: `verify_hash=False`,
CLI `--no-verify`; ~0.2 s per 100 MB here, see benchmarks/reliability). A manifest written before these fields
existed is accepted with an `UnverifiedArtifactWarning` (re-export or rebuild to get the check), not refused: such
artifacts were made by earlier versions of this tool and still describe themselves correctly in every other field.
"""

from __future__ import annotations

import json
import os
import platform
import warnings
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from ssdtrt.core.config import ModelSpec
from ssdtrt.core.errors import ManifestError
from ssdtrt.io.files import atomic_write_json, sha256_file

MANIFEST_FORMAT = "ssdtrt-manifest"
MANIFEST_VERSION = 1
ARTIFACT_KINDS = ("onnx", "openvino", "tensorrt", "checkpoint")
#: "nms": the model ends in detections (an ONNX `nms` export, or an OpenVINO engine built with `--postprocess
#: engine`: softmax + DetectionOutput, `engine["postprocess"] == "engine"`), same outputs either way.
EXPORT_MODES = ("raw", "decoded", "nms")
#: What the model's image input takes: host-normalized float NCHW at network size (the default), or the decoded
#: uint8 NHWC image at network size in the reader's channel order (normalization in the graph).
INPUT_FORMATS = ("float32-nchw", "uint8-nhwc")
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
    artifact_sha256: str = ""  # sha256 of the artifact file ("" = written before integrity fields existed)
    artifact_size: int = -1  # its size in bytes (-1 = unknown)
    weights_sha256: str = ""  # OpenVINO only: the .bin beside the .xml
    weights_size: int = -1
    input_format: str = "float32-nchw"  # one of INPUT_FORMATS
    format: str = MANIFEST_FORMAT
    version: int = MANIFEST_VERSION

    @property
    def model_spec(self) -> ModelSpec:
        return ModelSpec.from_dict(self.spec)

    @property
    def postprocess_placement(self) -> str:
        """"engine" when the model's outputs are detections (NMS in the graph), else "host"."""
        return "engine" if self.export_mode == "nms" else "host"

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
        if m.input_format not in INPUT_FORMATS:
            raise ManifestError(f"{where}: unknown input format {m.input_format!r} (known: {', '.join(INPUT_FORMATS)})")
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


def write_artifact_with_manifest(artifact: str | os.PathLike[str], data: bytes, manifest: Manifest) -> Path:
    """Write `data` to `artifact` and its manifest (stamped with sha256 and size) as one pair (`fileio.commit_pair`):
    a kill at any instant leaves the previous pair, no pair, or this one. Returns the manifest path."""
    from ssdtrt.io.files import commit_pair, staging_dir

    artifact = Path(artifact)
    manifest_path = manifest_path_for(artifact)
    with staging_dir(artifact) as stage:
        staged = stage / artifact.name
        staged.write_bytes(data)
        stamped = stamp_artifact(manifest, staged)
        staged_manifest = atomic_write_json(stage / manifest_path.name, stamped.to_dict())
        commit_pair([(staged, artifact)], (staged_manifest, manifest_path))
    manifest.artifact_sha256, manifest.artifact_size = stamped.artifact_sha256, stamped.artifact_size
    return manifest_path


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


class UnverifiedArtifactWarning(UserWarning):
    """A manifest without `artifact_sha256` / `artifact_size` (written by an earlier ssdtrt): nothing to check."""


def weights_path_for(artifact: str | os.PathLike[str]) -> Path:
    """An OpenVINO IR's weights file: `model.xml` → `model.bin`."""
    return Path(artifact).with_suffix(".bin")


def stamp_artifact(manifest: Manifest, artifact_path: str | os.PathLike[str]) -> Manifest:
    """A copy of `manifest` recording the sha256 and size of `artifact_path` (and of its .bin for OpenVINO)."""
    path = Path(artifact_path)
    stamped = replace(manifest, artifact_sha256=sha256_file(path), artifact_size=path.stat().st_size)
    if manifest.kind == "openvino":
        weights = weights_path_for(path)
        stamped = replace(stamped, weights_sha256=sha256_file(weights), weights_size=weights.stat().st_size)
    return stamped


def verify_artifact(manifest: Manifest, artifact_path: str | os.PathLike[str], *, verify_hash: bool = True) -> None:
    """Raise ManifestError (one line naming the file and its manifest) when the file is not the one the manifest
    describes: size always, sha256 unless `verify_hash` is False. Older manifests without the fields only warn."""
    path = Path(artifact_path)
    if manifest.kind == "checkpoint":  # a checkpoint carries its own metadata, not a sidecar
        return
    manifest_file = manifest_path_for(path)
    if not manifest.artifact_sha256 or manifest.artifact_size < 0:
        warnings.warn(
            f"{path}: its manifest {manifest_file} records no sha256/size (made by an older ssdtrt); not verified — "
            "re-export or rebuild to get the check",
            UnverifiedArtifactWarning,
            stacklevel=2,
        )
        return
    files = [(path, manifest.artifact_size, manifest.artifact_sha256)]
    if manifest.kind == "openvino" and path.suffix == ".xml":
        files.append((weights_path_for(path), manifest.weights_size, manifest.weights_sha256))
    for file, size, digest in files:
        _verify_file(file, size, digest, manifest_file, verify_hash)


def _verify_file(file: Path, size: int, digest: str, manifest_file: Path, verify_hash: bool) -> None:
    try:
        actual_size = file.stat().st_size
    except OSError as err:
        raise ManifestError(f"{file}: cannot be read ({err.strerror or err}); its manifest is {manifest_file}") from None
    if size >= 0 and actual_size != size:
        raise ManifestError(
            f"{file}: {actual_size} bytes but its manifest {manifest_file} records {size} "
            "(truncated, modified or paired with another model's manifest; re-export or rebuild)"
        )
    if verify_hash and digest:
        try:
            actual = sha256_file(file)
        except OSError as err:
            raise ManifestError(f"{file}: cannot be read ({err.strerror or err}); its manifest is {manifest_file}") from None
        if actual != digest:
            raise ManifestError(
                f"{file}: sha256 {actual[:12]}… differs from {digest[:12]}… recorded in its manifest {manifest_file} "
                "(corrupted, modified or paired with another model's manifest; re-export or rebuild)"
            )


def tool_versions(*packages: str) -> dict[str, str]:
    """Installed versions of `packages` plus python and ssdtrt (missing packages are skipped)."""
    out = {"python": platform.python_version()}
    for name in ("ssdtrt", *packages):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
