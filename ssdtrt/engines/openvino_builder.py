"""OpenVINO "engine": an exported ONNX saved as OpenVINO IR (`.xml` + `.bin`) with a manifest beside it.

The IR keeps the ONNX's precision (fp32 weights stay fp32: `compress_to_fp16=False`; a Q/DQ ONNX becomes an int8
model). The inference precision (f32 / bf16) is a compile-time hint recorded in the manifest, so the runner
compiles the model the way it was built and validated.

`postprocess="engine"` appends softmax + DetectionOutput to the raw heads (`ssdtrt.postprocess.openvino_graph`;
the outputs and export mode of an `nms` export), `input_format="uint8-nhwc"` moves type / layout / normalization into the graph
(`ssdtrt.preprocess.openvino_ppp`). Either way the plain raw-heads IR is kept beside the engine
(`<name>-heads.xml`, its own manifest; `engine["reference_ir"]` names it): the honest reference of
`bench throughput` and what `compare` checks the heads of.

The IR is saved and validated in a staging folder, then `.bin`, `.xml` and manifest are committed as one set
(`fileio.commit_pair`); the manifest records the sha256 and size of both the .xml and the .bin.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ssdtrt.core.errors import EngineBuildError, ManifestError
from ssdtrt.io.files import atomic_write_json, commit_pair, sha256_file, staging_dir
from ssdtrt.core.manifest import (
    INPUT_FORMATS,
    Manifest,
    TensorInfo,
    manifest_path_for,
    read_manifest,
    stamp_artifact,
    tool_versions,
    weights_path_for,
)
from ssdtrt.runtime.openvino_runner import PRECISION_HINTS, OpenVINORunner, import_openvino, openvino_core


#: Where an OpenVINO build puts the postprocess: "host" (raw heads out, numpy decodes) or "engine" (DetectionOutput).
POSTPROCESS_PLACEMENTS = ("host", "engine")
#: `ssdtrt build-engine --backend openvino` on a raw export without --postprocess / --input: pre- and postprocess in
#: the engine, the placement that passes parity and measured fastest (benchmarks/throughput/placement.md). The
#: library's `build_openvino` keeps the ONNX's outputs and input unless told.
DEFAULT_POSTPROCESS = "engine"
DEFAULT_INPUT = "uint8-nhwc"


@dataclass
class EngineBuildResult:
    engine_path: Path  # .xml (OpenVINO) or .plan (TensorRT)
    manifest_path: Path
    manifest: Manifest
    details: dict[str, Any]  # what the builder observed (compiled precision, build time, ...)
    reference: EngineBuildResult | None = None  # the raw-heads IR kept beside an engine-placed build


def default_engine_path(onnx_path: str | os.PathLike[str], suffix: str, tag: str = "", folder: str = "engines") -> Path:
    """`export/m_raw.onnx` → `engines/m_raw[_tag]<suffix>`."""
    stem = Path(onnx_path).stem
    return Path(folder) / f"{stem}{'_' + tag if tag else ''}{suffix}"


def engine_out_path(out: str | os.PathLike[str] | None, onnx_path: Path, suffix: str, tag: str = "") -> Path:
    """`--out engines/NAME` (suffix added when missing) or the default path."""
    if out is None:
        return default_engine_path(onnx_path, suffix, tag)
    path = Path(out)
    return path if path.suffix == suffix else path.with_name(path.name + suffix)


def read_onnx_manifest(onnx_path: str | os.PathLike[str]) -> tuple[Path, Manifest]:
    path = Path(onnx_path)
    if path.suffix != ".onnx":
        raise EngineBuildError(f"{path}: expected an exported .onnx file")
    if not path.is_file():
        raise EngineBuildError(f"{path}: no such ONNX file")
    manifest = read_manifest(path)
    if manifest.kind != "onnx":
        raise ManifestError(f"{path}: its manifest describes a {manifest.kind!r} artifact, not an ONNX export")
    return path, manifest


def build_openvino(
    onnx_path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    precision_hint: str = "f32",
    validate: bool = True,
    device: str = "CPU",
    postprocess: str = "host",
    input_format: str | None = None,
) -> EngineBuildResult:
    """Convert an exported ONNX to OpenVINO IR + manifest; with `validate`, compile once for `device`.

    postprocess: "host" (the ONNX's outputs) or "engine" (DetectionOutput appended; needs a `raw` export).
    input_format: "float32-nchw" or "uint8-nhwc" (decoded image at network size in); None keeps the ONNX's.
    """
    if precision_hint not in PRECISION_HINTS:
        raise EngineBuildError(f"unknown OpenVINO precision {precision_hint!r}; choose one of: {', '.join(PRECISION_HINTS)}")
    if postprocess not in POSTPROCESS_PLACEMENTS:
        raise EngineBuildError(f"unknown postprocess placement {postprocess!r}; choose one of: {', '.join(POSTPROCESS_PLACEMENTS)}")
    if input_format is not None and input_format not in INPUT_FORMATS:
        raise EngineBuildError(f"unknown input format {input_format!r}; choose one of: {', '.join(INPUT_FORMATS)}")
    ov = import_openvino()
    onnx_path, src = read_onnx_manifest(onnx_path)
    input_format = input_format or src.input_format
    tag = "bf16" if precision_hint == "bf16" and src.precision == "fp32" else ""
    dest = engine_out_path(out, onnx_path, ".xml", tag)
    transformed = postprocess == "engine" or input_format != src.input_format
    if postprocess == "engine" and src.export_mode != "raw":
        raise EngineBuildError(f"{onnx_path}: --postprocess engine needs a raw export, this one is {src.export_mode!r}")
    if input_format != src.input_format and src.input_format != "float32-nchw":
        raise EngineBuildError(f"{onnx_path}: its input is already {src.input_format}")
    model = _read(ov, onnx_path)
    _keep_output_names(model, [t.name for t in src.outputs], onnx_path)
    reference = None
    if transformed:  # the plain raw-heads IR beside the engine (bench reference)
        reference = build_openvino(onnx_path, reference_path_for(dest), precision_hint=precision_hint,
                                   validate=False, device=device)
    manifest = replace(
        src,
        artifact=dest.name,
        kind="openvino",
        precision=_engine_precision(src.precision, precision_hint),
        source={**src.source, "onnx": onnx_path.name, "onnx_sha256": sha256_file(onnx_path)},
        tools={**src.tools, **tool_versions("openvino")},
        engine={
            "backend": "openvino",
            "openvino_version": ov.get_version(),
            "device": device,
            "precision_hint": precision_hint,
            "onnx_precision": src.precision,
            "postprocess": postprocess if src.export_mode == "raw" else src.postprocess_placement,
            "input_format": input_format,
            **({"reference_ir": reference.engine_path.name} if reference is not None else {}),
        },
    )
    if transformed:
        model, manifest = _transform(model, manifest, postprocess, input_format)
    manifest, details = _save_validated(ov, model, manifest, dest, device, precision_hint, validate)
    return EngineBuildResult(dest, manifest_path_for(dest), manifest, details, reference)


def reference_path_for(engine_xml: str | os.PathLike[str]) -> Path:
    """The raw-heads IR kept beside an engine-placed build: `m.xml` → `m-heads.xml`."""
    path = Path(engine_xml)
    return path.with_name(f"{path.stem}-heads{path.suffix}")


def _read(ov: Any, onnx_path: Path) -> Any:
    try:
        return openvino_core().read_model(str(onnx_path))
    except Exception as err:  # noqa: BLE001 - OpenVINO's own RuntimeError types
        raise EngineBuildError(f"{onnx_path}: OpenVINO cannot read it ({_first_line(err)})") from err


def _transform(model: Any, manifest: Manifest, postprocess: str, input_format: str) -> tuple[Any, Manifest]:
    """Apply the in-graph preprocess / postprocess and describe the new I/O in the manifest."""
    spec = manifest.model_spec
    inputs, outputs, mode = manifest.inputs, manifest.outputs, manifest.export_mode
    if input_format == "uint8-nhwc" and manifest.input_format != "uint8-nhwc":
        from ssdtrt.preprocess.openvino_ppp import add_uint8_input

        model = add_uint8_input(model, spec.preprocess)
        first = manifest.inputs[0]
        inputs = [TensorInfo(first.name, [first.shape[0], spec.preprocess.height, spec.preprocess.width, 3], "uint8", "NHWC")]
    if postprocess == "engine":
        from ssdtrt.postprocess.openvino_graph import append_detection_output
        from ssdtrt.postprocess.settings import baked_settings

        settings = baked_settings(manifest.postprocess, spec.postprocess)  # what the export recorded
        model = append_detection_output(model, spec, settings)
        n, k = inputs[0].shape[0], int(settings.max_detections)
        outputs = [TensorInfo("num_detections", [n], "int32", "N"), TensorInfo("boxes", [n, k, 4], "float32", "NK4"),
                   TensorInfo("scores", [n, k], "float32", "NK"), TensorInfo("labels", [n, k], "int32", "NK")]
        mode = "nms"  # the same outputs as an ONNX `nms` export
    return model, replace(manifest, inputs=inputs, outputs=outputs, export_mode=mode, input_format=input_format)


def _save_validated(
    ov: Any, model: Any, manifest: Manifest, dest: Path, device: str, precision_hint: str, validate: bool
) -> tuple[Manifest, dict[str, Any]]:
    """Save the IR in a staging folder, compile it once (`validate`), then commit .bin, .xml and manifest."""
    details: dict[str, Any] = {}
    manifest_path = manifest_path_for(dest)
    with staging_dir(dest) as stage:
        staged_xml = stage / dest.name
        _save_ir(ov, model, staged_xml, dest)
        manifest = stamp_artifact(manifest, staged_xml)
        if validate:  # compile the staged IR: a model that fails here never replaces the previous pair
            runner = OpenVINORunner(staged_xml, device=device, precision_hint=precision_hint, manifest=manifest)
            try:
                runner.activate()
                details = runner.describe()
            finally:
                runner.deactivate()
            manifest.engine["compiled_inference_precision"] = details.get("compiled_inference_precision_hint", "")
        staged_manifest = atomic_write_json(stage / manifest_path.name, manifest.to_dict())
        # .bin before .xml: an .xml never points at a missing or older weights file while the manifest is absent
        commit_pair([(weights_path_for(staged_xml), weights_path_for(dest)), (staged_xml, dest)],
                    (staged_manifest, manifest_path))
    return manifest, details


def _keep_output_names(model: Any, names: list[str], onnx_path: Path) -> None:
    """Give the IR's outputs the manifest's names (in ONNX graph-output order, which OpenVINO's reader keeps).

    A no-op while the reader carries the ONNX names over (OpenVINO 2026.4 does); it pins them should a reader keep
    only an internal name. The names compiling merges in are handled by the runner (`output_port_names`).
    """
    if not names:
        return
    if len(model.outputs) != len(names):
        raise EngineBuildError(
            f"{onnx_path}: OpenVINO reads {len(model.outputs)} outputs, "
            f"the manifest lists {len(names)} ({', '.join(names)})"
        )
    for port, name in zip(model.outputs, names):
        tensor = port.get_tensor()
        if name not in tensor.get_names():
            tensor.set_names({name, *tensor.get_names()})


def _engine_precision(onnx_precision: str, precision_hint: str) -> str:
    """The manifest precision: the ONNX's, except an fp32 graph compiled with the bf16 hint is `bf16`."""
    return "bf16" if onnx_precision == "fp32" and precision_hint == "bf16" else onnx_precision


def _save_ir(ov: Any, model: Any, staged_xml: Path, dest: Path) -> None:
    """`ov.save_model` into the staging folder (`.xml` + `.bin`), weights kept at the ONNX's precision."""
    try:
        ov.save_model(model, str(staged_xml), compress_to_fp16=False)
    except Exception as err:  # noqa: BLE001
        raise EngineBuildError(f"cannot save the OpenVINO model to {dest} ({_first_line(err)})") from err


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0][:200] if lines else type(err).__name__
