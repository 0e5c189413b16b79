"""PyTorch SSD → ONNX (`raw` | `decoded` | `nms`) with a manifest beside it; FP16 / INT8 variants via `precision`.

    export_checkpoint("runs/demo/model.pt", "export/demo.onnx", mode="nms", dynamic_batch=True)

Every graph passes `onnx.checker` (full check) and strict shape inference before it is written; the `.onnx` and its
manifest (with the file's sha256 and size) are committed as a pair (`fileio.commit_pair`), so a failure or a kill
never leaves a partial `.onnx` or a manifest beside a file it does not describe. Input `images [N, 3, H, W]` float32,
normalized (or, with `input_format="uint8-nhwc"`, `images [N, H, W, 3]` uint8 RGB: normalization in the graph).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ssdtrt.core.config import PostprocessSpec
from ssdtrt.core.errors import CheckpointError, ExportError
from ssdtrt.io.files import atomic_path, sha256_file
from ssdtrt.core.manifest import INPUT_FORMATS, Manifest, TensorInfo, tool_versions, write_artifact_with_manifest

if TYPE_CHECKING:
    import onnx
    import torch

MODES = ("raw", "decoded", "nms")
#: Softmax over the last axis (13), Unsqueeze/ReduceSum axes as inputs (13), per-channel Q/DQ (13).
MIN_OPSET = 13
DEFAULT_OPSET = 17
INPUT_NAME = "images"
#: (tensor name, rank) -> layout letters: N batch, P priors, C classes, K detections.
_LAYOUTS = {
    ("images", 4): "NCHW", ("locs", 3): "NP4", ("logits", 3): "NPC", ("boxes", 3): "NP4", ("scores", 3): "NPC",
    ("num_detections", 1): "N", ("scores", 2): "NK", ("labels", 2): "NK",
}


@dataclass(frozen=True)
class ExportResult:
    onnx_path: Path
    manifest_path: Path
    manifest: Manifest


def output_names(mode: str) -> tuple[str, ...]:
    if mode == "raw":
        return ("locs", "logits")
    if mode == "decoded":
        return ("boxes", "scores")
    if mode == "nms":
        from ssdtrt.postprocess.onnx_nms import NMS_OUTPUTS

        return NMS_OUTPUTS
    raise ExportError(f"unknown export mode {mode!r}; choose one of: {', '.join(MODES)}")


def resolve_postprocess(spec_default: PostprocessSpec, **overrides: Any) -> PostprocessSpec:
    """The preset's postprocess settings with the non-None `overrides` applied (topk_candidates=0 means None)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("topk_candidates") == 0:
        given["topk_candidates"] = None
    return replace(spec_default, **given)


def torch_to_onnx(
    model: torch.nn.Module,
    *,
    mode: str = "raw",
    batch: int = 1,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    postprocess: PostprocessSpec | None = None,
) -> onnx.ModelProto:
    """The checked fp32 ONNX graph (in memory) of an SSD (`.spec`, `.num_classes`) for one export mode."""
    body = export_body(model, mode=mode, batch=batch, dynamic_batch=dynamic_batch, opset=opset)
    return finish_graph(body, model, mode=mode, batch=batch, dynamic_batch=dynamic_batch, postprocess=postprocess)


def export_body(
    model: torch.nn.Module, *, mode: str = "raw", batch: int = 1, dynamic_batch: bool = False, opset: int = DEFAULT_OPSET
) -> onnx.ModelProto:
    """The network part traced by torch.onnx: `raw` heads, or decoded boxes + scores (for `decoded` and `nms`).

    For `nms` the outputs are named `decoded_boxes` / `decoded_scores`; `finish_graph` appends the NMS tail to them
    (after any fp16 / int8 conversion, so the tail always stays fp32 and unquantized).
    """
    import onnx
    import torch

    from ssdtrt.export.wrappers import DecodedHeads, RawHeads
    from ssdtrt.core.priors import default_boxes

    output_names(mode)  # validates mode
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old: the {mode} graph needs opset >= {MIN_OPSET}")
    if batch < 1:
        raise ExportError(f"batch must be >= 1, got {batch}")
    spec = model.spec
    wrapper: torch.nn.Module = RawHeads(model) if mode == "raw" else DecodedHeads(model, default_boxes(spec), spec.variances)
    names = {"raw": ["locs", "logits"], "decoded": ["boxes", "scores"], "nms": ["decoded_boxes", "decoded_scores"]}[mode]
    pre = spec.preprocess
    dummy = torch.zeros(batch, 3, pre.height, pre.width, dtype=torch.float32)
    dyn = {n: {0: "batch"} for n in (INPUT_NAME, *names)} if dynamic_batch else None
    buf = io.BytesIO()
    was_training = model.training
    wrapper.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, (dummy,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                output_names=names, dynamic_axes=dyn, do_constant_folding=True,
            )
    except Exception as err:  # torch raises many types; one clear line for the user
        raise ExportError(f"torch.onnx.export failed ({type(err).__name__}: {str(err).splitlines()[0]})") from err
    finally:
        model.train(was_training)
    proto = onnx.load_from_string(buf.getvalue())
    _static_head_dims(proto, spec.priors.num_priors, int(model.num_classes))
    proto.graph.name = f"ssdtrt_{spec.name}_{mode}"
    proto.producer_name = "ssdtrt"
    return proto


def _static_head_dims(proto: onnx.ModelProto, num_priors: int, num_classes: int) -> None:
    """Declare the P and 4 / C axes of the [N, P, 4] / [N, P, C] outputs static: torch leaves some symbolic (VGG16's
    ceil-mode pool defeats its shape tracking), which TensorRT would treat as data-dependent."""
    for out in proto.graph.output:
        dims = out.type.tensor_type.shape.dim
        if len(dims) != 3:
            continue
        last = 4 if out.name in ("locs", "boxes", "decoded_boxes") else num_classes
        for d, value in ((dims[1], num_priors), (dims[2], last)):
            if d.dim_param:
                d.dim_value = value


def finish_graph(
    body: onnx.ModelProto,
    model: Any,
    *,
    mode: str,
    batch: int = 1,
    dynamic_batch: bool = False,
    postprocess: PostprocessSpec | None = None,
) -> onnx.ModelProto:
    """Append the NMS tail for `nms` mode, then run the checker and strict shape inference."""
    if mode == "nms":
        from ssdtrt.postprocess.onnx_nms import append_nms

        body = append_nms(
            body, "decoded_boxes", "decoded_scores", num_priors=model.spec.priors.num_priors,
            num_classes=model.num_classes, settings=postprocess or model.spec.postprocess,
            batch="batch" if dynamic_batch else batch,
        )
    check_onnx(body)
    return body


def check_onnx(proto: onnx.ModelProto) -> onnx.ModelProto:
    """`onnx.checker` full check + strict shape inference; raises ExportError with the checker's first line."""
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
        return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportError(f"the exported ONNX is invalid: {str(err).strip().splitlines()[0]}") from err


def simplify_onnx(proto: onnx.ModelProto, atol: float = 1e-4) -> onnx.ModelProto:
    """onnxslim, then a parity check of slim vs original in ONNX Runtime on a random input (ExportError if off)."""
    try:
        import onnxslim
    except ImportError as err:
        raise ExportError("--simplify needs onnxslim (pip install onnxslim)") from err
    try:
        slim = onnxslim.slim(proto)
    except Exception as err:  # noqa: BLE001 - third-party failure → one line
        raise ExportError(f"onnxslim failed: {err}") from err
    check_onnx(slim)
    a, b = _ort_run(proto), _ort_run(slim)
    for name in a:
        diff = float(np.max(np.abs(a[name].astype(np.float64) - b[name].astype(np.float64)), initial=0.0))
        if diff > atol:
            raise ExportError(f"simplified graph differs from the original on output {name!r}: max |diff| {diff:.3g}")
    return slim


def _ort_run(proto: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 2 for d in inp.shape]
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {inp.name: x})))


def io_tensor_infos(proto: onnx.ModelProto, mode: str = "raw") -> tuple[list[TensorInfo], list[TensorInfo]]:
    """Manifest TensorInfos of the graph inputs and outputs (named dims stay strings)."""
    from onnx import helper

    def info(vi: Any) -> TensorInfo:
        t = vi.type.tensor_type
        shape: list[int | str] = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name
        name = vi.name
        layout = "NK4" if (mode, name) == ("nms", "boxes") else _LAYOUTS.get((name, len(shape)), "")
        if (name, dtype) == (INPUT_NAME, "uint8"):
            layout = "NHWC"  # `--input uint8-nhwc`
        return TensorInfo(name=name, shape=shape, dtype=dtype, layout=layout)

    inputs = [info(vi) for vi in proto.graph.input if vi.name not in {i.name for i in proto.graph.initializer}]
    return inputs, [info(vi) for vi in proto.graph.output]


def save_onnx(proto: onnx.ModelProto, out: str | os.PathLike[str]) -> Path:
    """Atomic write (temp file beside `out`, then rename); unwritable locations raise ExportError."""
    import onnx

    out = Path(out)
    try:
        with atomic_path(out) as tmp:
            onnx.save(proto, str(tmp))
    except OSError as err:
        raise ExportError(f"cannot write {out}: {err.strerror or err}") from err
    return out


def build_manifest(
    proto: onnx.ModelProto,
    onnx_path: Path,
    model: Any,
    *,
    mode: str,
    precision: str,
    postprocess: PostprocessSpec,
    source: dict[str, Any],
    input_format: str = "float32-nchw",
) -> Manifest:
    inputs, outputs = io_tensor_infos(proto, mode)
    category_ids = getattr(model, "category_ids", None)  # dataset ids per label (COCO), set from the checkpoint
    if category_ids is not None:
        source = {"category_ids": [int(i) for i in category_ids], **source}
    return Manifest(
        artifact=onnx_path.name,
        kind="onnx",
        spec=model.spec.to_dict(),
        num_classes=int(model.num_classes),
        class_names=list(model.class_names),
        export_mode=mode,
        precision=precision,
        inputs=inputs,
        outputs=outputs,
        postprocess=asdict(postprocess),
        source={**source, "opset": max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)},
        tools=_tools(),
        input_format=input_format,
    )


def _tools() -> dict[str, str]:
    """Library versions (module __version__, so onnxruntime-gpu reports as onnxruntime)."""
    import importlib

    tools = tool_versions("onnxslim")
    for name in ("torch", "onnx", "onnxruntime"):
        try:
            tools[name] = str(importlib.import_module(name).__version__)
        except (ImportError, AttributeError):
            continue
    return tools


def default_out_path(checkpoint: str | os.PathLike[str], mode: str, precision: str, folder: str = "export") -> Path:
    stem = Path(checkpoint).stem
    return Path(folder) / f"{stem}_{mode}{'' if precision == 'fp32' else '_' + precision}.onnx"


def export_model(
    model: Any,
    out: str | os.PathLike[str],
    *,
    mode: str = "raw",
    batch: int = 1,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    simplify: bool = False,
    precision: str = "fp32",
    postprocess: PostprocessSpec | None = None,
    calibration: Any = None,
    source: dict[str, Any] | None = None,
    input_format: str = "float32-nchw",
) -> ExportResult:
    """Export an in-memory SSD; `calibration` is a `precision.CalibrationConfig` (required for int8).

    input_format "uint8-nhwc": the graph takes the decoded RGB image at network size (`export.input_uint8`)."""
    if precision not in ("fp32", "fp16", "int8"):
        raise ExportError(f"unknown precision {precision!r}; choose fp32, fp16 or int8")
    if input_format not in INPUT_FORMATS:
        raise ExportError(f"unknown input format {input_format!r}; choose one of: {', '.join(INPUT_FORMATS)}")
    out = Path(out)
    if out.suffix != ".onnx":
        raise ExportError(f"{out}: the output file name must end in .onnx")
    settings = postprocess or model.spec.postprocess
    if mode == "nms":  # the graph's explicit per-class candidate cap (TensorRT limits), recorded in the manifest
        from ssdtrt.postprocess.onnx_nms import nms_settings

        try:
            settings = nms_settings(settings, model.spec.priors.num_priors)
        except ValueError as err:
            raise ExportError(f"{out}: {err}") from err
    proto = export_body(model, mode=mode, batch=batch, dynamic_batch=dynamic_batch, opset=opset)
    if simplify:
        proto = simplify_onnx(proto)
    extra_source: dict[str, Any] = {}
    if precision == "fp16":
        from ssdtrt.export.precision import convert_fp16

        proto = convert_fp16(proto)
    elif precision == "int8":
        from ssdtrt.export.precision import quantize_int8

        if calibration is None:
            raise ExportError("--precision int8 needs calibration data (--calib-data SPEC)")
        proto, extra_source = quantize_int8(proto, model.spec, calibration)
    if input_format == "uint8-nhwc":  # after calibration / fp16 conversion: the preprocess stays fp32, unquantized
        from ssdtrt.export.input_uint8 import prepend_uint8_input

        proto = prepend_uint8_input(proto, model.spec.preprocess, INPUT_NAME)
    proto = finish_graph(proto, model, mode=mode, batch=batch, dynamic_batch=dynamic_batch, postprocess=settings)
    manifest = build_manifest(
        proto, out, model, mode=mode, precision=precision, postprocess=settings,
        source={**(source or {}), **extra_source}, input_format=input_format,
    )
    try:  # the .onnx and its manifest as one pair (fileio.commit_pair)
        manifest_path = write_artifact_with_manifest(out, proto.SerializeToString(), manifest)
    except OSError as err:
        raise ExportError(f"cannot write {out} and its manifest: {err.strerror or err}") from err
    return ExportResult(out, manifest_path, manifest)


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    mode: str = "raw",
    precision: str = "fp32",
    postprocess_overrides: dict[str, Any] | None = None,
    **kwargs: Any,
) -> ExportResult:
    """`export_model` for a checkpoint `ssdtrt.load_model` reads; the manifest records its path and sha256.

    `postprocess_overrides` (score_threshold, iou_threshold, topk_candidates (0 = all), max_detections, min_size;
    None values ignored) adjust the checkpoint preset's postprocess settings.
    """
    from ssdtrt.model.checkpoint import load_model

    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise CheckpointError(f"{ckpt}: no such checkpoint file")
    try:
        digest = sha256_file(ckpt)
    except OSError as err:
        raise CheckpointError(f"{ckpt}: unreadable ({err.strerror or err})") from err
    model = load_model(ckpt, "cpu")
    if postprocess_overrides:
        kwargs["postprocess"] = resolve_postprocess(model.spec.postprocess, **postprocess_overrides)
    out_path = Path(out) if out is not None else default_out_path(ckpt, mode, precision)
    source = {"checkpoint": str(ckpt), "sha256": digest}
    return export_model(model, out_path, mode=mode, precision=precision, source=source, **kwargs)
