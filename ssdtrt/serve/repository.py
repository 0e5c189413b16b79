"""`ssdtrt export-triton`: a Triton model repository, the ensemble `ssd` = python preprocess → detector → python
postprocess, with the same I/O contract as `ssdtrt serve` (see `ssdtrt.serve.contract`).

    REPO/ssd/config.pbtxt               ensemble (platform "ensemble"), class names in its parameters
    REPO/ssd_preprocess/1/model.py      encoded bytes → network input + original size (Detector.preprocess)
    REPO/ssd_detector/1/model.*         tensorrt (model.plan), onnxruntime (model.onnx), openvino (model.xml/.bin)
                                        or python (ssdtrt's runner in the python backend: the CPU deployment)
    REPO/ssd_postprocess/1/model.py     network outputs → contract outputs (Detector.postprocess)
    REPO/README.md                      how to deploy it (and build a plan inside the matching Triton container)

The config.pbtxt files are written as text (protobuf text format); tests parse them with tritonclient's
`model_config_pb2`. Torch-free.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssdtrt.core.errors import ManifestError
from ssdtrt.core.manifest import Manifest, manifest_path_for, read_manifest, verify_artifact
from ssdtrt.serve import contract
from ssdtrt.serve.repository_readme import repository_readme

DETECTORS = ("tensorrt", "onnxruntime", "openvino", "python")
TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
                 "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL"}
MODELS_DIR = Path(__file__).parent / "triton_models"


@dataclass(frozen=True)
class RepositorySettings:
    """What the repository's configs say. `ssdtrt_path`: folder put on the python models' sys.path when it exists
    there ("" = rely on an ssdtrt installed in Triton's python environment)."""

    detector: str = "python"
    model_name: str = "ssd"
    max_batch_size: int = 16
    max_queue_delay_us: int = 2000
    instances: int = 1
    detector_instances: int = 1
    score_threshold: float | None = None
    iou_threshold: float | None = None
    max_detections: int | None = None
    runner: str | None = None  # python detector: onnxruntime or openvino (default: by artifact)
    threads: int | None = None  # python detector: CPU threads of its runner
    ssdtrt_path: str = ""
    #: check the model's sha256 against its manifest before copying it, and in the python detector when Triton loads
    #: it (the size is always checked)
    verify_hash: bool = True


def export_repository(model: str | Path, out: str | Path, settings: RepositorySettings) -> Path:
    """Write the repository for `model` (ONNX, OpenVINO .xml or TensorRT .plan with its manifest) under `out`."""
    if settings.detector not in DETECTORS:
        raise ManifestError(f"--detector must be one of {', '.join(DETECTORS)}, not {settings.detector!r}")
    if settings.max_batch_size < 1:
        raise ManifestError(f"--max-batch-size must be >= 1, got {settings.max_batch_size}")
    model = Path(model)
    if not model.is_file():
        raise ManifestError(f"{model}: no such file")
    if model.suffix in (".pt", ".pth"):
        raise ManifestError(f"{model}: export-triton needs an exported model (ssdtrt export {model} --dynamic-batch)")
    manifest = read_manifest(model)
    verify_artifact(manifest, model, verify_hash=settings.verify_hash)  # never package a damaged model
    _check_detector_fits(model, manifest, settings)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from ssdtrt.serve.stages import stage_detector

    names = _names(settings.model_name)
    k = stage_detector(manifest_path_for(model), _overrides(settings)).settings.max_detections
    manifest_json = json.dumps(manifest.to_dict(), indent=2)
    net_in = manifest.inputs[0]
    for key in ("pre", "det", "post", "ens"):
        (out / names[key] / "1").mkdir(parents=True, exist_ok=True)

    _python_model(out / names["pre"], "preprocess.py", manifest_json)
    _write(out / names["pre"] / "config.pbtxt", _config(
        names["pre"], settings, backend="python", instances=settings.instances,
        inputs=[(contract.INPUT_NAME, "TYPE_STRING", [1])],
        outputs=[(net_in.name, _dtype(net_in.dtype), _dims(net_in.shape)), ("image_size_hw", "TYPE_INT32", [2])],
        parameters={"ssdtrt_path": settings.ssdtrt_path},
    ))
    _detector(model, manifest, out / names["det"], names["det"], settings)
    _python_model(out / names["post"], "postprocess.py", manifest_json)
    dims = contract.output_dims(k)
    _write(out / names["post"] / "config.pbtxt", _config(
        names["post"], settings, backend="python", instances=settings.instances,
        inputs=[*[(t.name, _dtype(t.dtype), _dims(t.shape)) for t in manifest.outputs], ("image_size_hw", "TYPE_INT32", [2])],
        outputs=[(n, dt, dims[n]) for n, dt, _ in contract.OUTPUTS],
        parameters={"ssdtrt_path": settings.ssdtrt_path, **{k_: str(v) for k_, v in _overrides(settings).items()}},
    ))
    _write(out / names["ens"] / "config.pbtxt", _ensemble(names, manifest, settings, dims))
    _write(out / "README.md", repository_readme(model, manifest, settings, names, k))
    return out


# ------------------------------------------------------------------------------------------------ pieces


def _names(model_name: str) -> dict[str, str]:
    return {"ens": model_name, "pre": f"{model_name}_preprocess", "det": f"{model_name}_detector",
            "post": f"{model_name}_postprocess"}


def _overrides(settings: RepositorySettings) -> dict[str, Any]:
    from ssdtrt.postprocess.settings import override_values

    return override_values(settings)


def _check_detector_fits(model: Path, manifest: Manifest, settings: RepositorySettings) -> None:
    if len(manifest.inputs) != 1:
        raise ManifestError(f"{model}: expected one image input, found {[t.name for t in manifest.inputs]}")
    if settings.detector != "python" and not manifest.dynamic_batch:
        raise ManifestError(f"{model}: Triton batches requests, the model has a static batch "
                            f"(export it again with --dynamic-batch)")
    kinds = {"tensorrt": ("onnx", "tensorrt"), "onnxruntime": ("onnx",), "openvino": ("openvino", "onnx"),
             "python": ("onnx", "openvino")}
    if manifest.kind not in kinds[settings.detector]:
        raise ManifestError(f"{model}: a {manifest.kind} artifact cannot be a {settings.detector} detector "
                            f"(accepted: {', '.join(kinds[settings.detector])})")


def _detector(model: Path, manifest: Manifest, folder: Path, name: str, s: RepositorySettings) -> None:
    net_in = manifest.inputs[0]
    inputs = [(net_in.name, _dtype(net_in.dtype), _dims(net_in.shape))]
    outputs = [(t.name, _dtype(t.dtype), _dims(t.shape)) for t in manifest.outputs]
    version = folder / "1"
    params: dict[str, str] = {}
    kind = "KIND_CPU"
    if s.detector == "python":
        shutil.copy2(model, version / model.name)
        shutil.copy2(manifest_path_for(model), version / manifest_path_for(model).name)
        if model.suffix == ".xml":
            shutil.copy2(model.with_suffix(".bin"), version / model.with_suffix(".bin").name)
        shutil.copy2(MODELS_DIR / "detector.py", version / "model.py")
        shutil.copy2(MODELS_DIR / "_common.py", version / "ssdtrt_triton.py")
        params = {"ssdtrt_path": s.ssdtrt_path, "artifact": model.name, "runner": s.runner or "",
                  "threads": "" if s.threads is None else str(s.threads), "verify_hash": "1" if s.verify_hash else "0"}
        header = 'backend: "python"'
    elif s.detector == "onnxruntime":
        shutil.copy2(model, version / "model.onnx")
        header = 'platform: "onnxruntime_onnx"\ndefault_model_filename: "model.onnx"'
    elif s.detector == "openvino":
        if model.suffix == ".xml":
            shutil.copy2(model, version / "model.xml")
            shutil.copy2(model.with_suffix(".bin"), version / "model.bin")
            header = 'backend: "openvino"\ndefault_model_filename: "model.xml"'
        else:
            shutil.copy2(model, version / "model.onnx")
            header = 'backend: "openvino"\ndefault_model_filename: "model.onnx"'
    else:  # tensorrt: a plan only loads on the TensorRT version that built it -> build it inside the container
        if manifest.kind == "tensorrt":
            shutil.copy2(model, version / "model.plan")
        else:
            shutil.copy2(model, folder / "model.onnx")  # README: trtexec --onnx ... --saveEngine 1/model.plan
        header = 'platform: "tensorrt_plan"\ndefault_model_filename: "model.plan"'
        kind = "KIND_GPU"
    _write(folder / "config.pbtxt", _config(name, s, header=header, instances=s.detector_instances, kind=kind,
                                            inputs=inputs, outputs=outputs, parameters=params))


def _python_model(folder: Path, template: str, manifest_json: str) -> None:
    shutil.copy2(MODELS_DIR / template, folder / "1" / "model.py")
    shutil.copy2(MODELS_DIR / "_common.py", folder / "1" / "ssdtrt_triton.py")
    (folder / "1" / "manifest.json").write_text(manifest_json, encoding="utf-8")


def _dtype(numpy_name: str) -> str:
    try:
        return TRITON_DTYPES[numpy_name]
    except KeyError:
        raise ManifestError(f"no Triton data type for {numpy_name!r}") from None


def _dims(shape: list[int | str]) -> list[int]:
    """Manifest shape → Triton dims: the batch dim dropped, named dynamic dims as -1."""
    return [d if isinstance(d, int) and d > 0 else -1 for d in shape[1:]]


def _tensor(name: str, dtype: str, dims: list[int]) -> str:
    return f'  {{ name: "{name}" data_type: {dtype} dims: [ {", ".join(str(d) for d in dims)} ] }}'


def _tensors(tensors: list[tuple[str, str, list[int]]]) -> str:
    return ",\n".join(_tensor(*t) for t in tensors)


def _parameters(parameters: dict[str, str]) -> str:
    return "".join(f'parameters {{ key: "{k}" value {{ string_value: {json.dumps(v)} }} }}\n'
                   for k, v in parameters.items())


def _config(name: str, s: RepositorySettings, *, inputs: list[tuple[str, str, list[int]]],
            outputs: list[tuple[str, str, list[int]]], backend: str | None = None, header: str | None = None,
            instances: int = 1, kind: str = "KIND_CPU", parameters: dict[str, str] | None = None) -> str:
    head = header if header is not None else f'backend: "{backend}"'
    return (
        f'name: "{name}"\n{head}\nmax_batch_size: {s.max_batch_size}\n'
        f"input [\n{_tensors(inputs)}\n]\n"
        f"output [\n{_tensors(outputs)}\n]\n"
        f"dynamic_batching {{ max_queue_delay_microseconds: {s.max_queue_delay_us} }}\n"
        f"instance_group [ {{ count: {max(1, instances)} kind: {kind} }} ]\n"
        + _parameters(parameters or {})
    )


def _ensemble(names: dict[str, str], manifest: Manifest, s: RepositorySettings, dims: dict[str, list[int]]) -> str:
    net_in = manifest.inputs[0].name
    det_out = [t.name for t in manifest.outputs]
    maps = lambda pairs, kind: " ".join(f'{kind} {{ key: "{k}" value: "{v}" }}' for k, v in pairs)  # noqa: E731
    steps = [
        (names["pre"], maps([(contract.INPUT_NAME, contract.INPUT_NAME)], "input_map"),
         maps([(net_in, "pre_" + net_in), ("image_size_hw", "pre_image_size_hw")], "output_map")),
        (names["det"], maps([(net_in, "pre_" + net_in)], "input_map"),
         maps([(o, "det_" + o) for o in det_out], "output_map")),
        (names["post"], maps([*[(o, "det_" + o) for o in det_out], ("image_size_hw", "pre_image_size_hw")], "input_map"),
         maps([(o, o) for o in contract.OUTPUT_NAMES], "output_map")),
    ]
    step_text = ",\n".join(f'    {{ model_name: "{m}" model_version: -1 {i} {o} }}' for m, i, o in steps)
    return (
        f'name: "{names["ens"]}"\nplatform: "ensemble"\nmax_batch_size: {s.max_batch_size}\n'
        f"input [\n{_tensor(contract.INPUT_NAME, 'TYPE_STRING', [1])}\n]\n"
        f"output [\n{_tensors([(n, dt, dims[n]) for n, dt, _ in contract.OUTPUTS])}\n]\n"
        f"ensemble_scheduling {{\n  step [\n{step_text}\n  ]\n}}\n"
        + _parameters({contract.CLASS_NAMES_PARAMETER: contract.class_names_json(manifest.class_names)})
    )


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
