"""Precision variants of an exported graph, in the form TensorRT 11 takes them (precision lives in the ONNX).

FP16: weights and compute in fp16, inputs/outputs fp32 (keep_io_types), except what must stay fp32 under strong
typing: the tail after the head concatenation (decode, softmax, NMS: one Cast at the boundary, no fp32→fp16→fp32
round trips) and L2 norms (TensorRT's ReduceL2 squares in the input type; fp16 x² overflows at |x| ≥ 256).

INT8: Q/DQ from onnxruntime.quantization — symmetric int8 activations and weights (zero points 0), per-channel
weights, biases left float — on Conv/Gemm/MatMul inputs, plus the residual input of every conv-fed Add
(`residual_qdq`), calibrated on images preprocessed by `ssdtrt.preprocess.host` (see `calibration`). The float parts
between are then made fp16 as in the FP16 variant (modelopt's `high_precision_dtype="fp16"`): a DequantizeLinear's
output takes its scale's type, so fp16 scales (opset 19) give fp16 activations. Both run in ONNX Runtime on CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ssdtrt.core.config import ModelSpec
from ssdtrt.core.errors import ExportError
from ssdtrt.export.calibration import (
    ArrayCalibrationReader,
    CalibrationConfig,
    calibration_tensors,
    ranges_cache_path,
)
from ssdtrt.export.float_variants import unround_inputs
from ssdtrt.export.graph_regions import GraphIndex, norm_nodes, tail_nodes
from ssdtrt.postprocess.onnx_nms import NMS_PREFIX
from ssdtrt.export.residual_qdq import quantize_residuals

if TYPE_CHECKING:
    import onnx

#: Ops kept in fp32 in the fp16 variant (besides onnxruntime's default block list): probabilities near the
#: 0.01 score threshold and exp() of the box decode lose too much in fp16, and they cost nothing.
FP16_KEEP_FP32_OPS = ("Softmax", "Exp")
#: Entropy (KL) calibration as TensorRT's legacy calibrator does it: 2048-bin histograms folded to 128 int8 bins.
#: Calibration batches per onnxruntime `collect_data` call (bounds the intermediate tensors held in memory).
CALIB_CHUNK_BATCHES = 2
#: (onnxruntime's quantize_static default of 128 bins leaves one candidate threshold: plain min/max.)
ENTROPY_NUM_BINS, ENTROPY_QUANTIZED_BINS = 2048, 128
#: Ops whose inputs (activations and weights) get Q/DQ in the int8 variant; their outputs stay float, the next
#: quantized op's input Q/DQ follows them (the placement NVIDIA's quantization toolkits use; TensorRT fuses it).
INT8_OP_TYPES = ("Conv", "Gemm", "MatMul")
#: ONNX metadata key listing the quantizable layers left float on purpose (mixed precision, `--max-drop`).
FLOAT_LAYERS_KEY = "ssdtrt.int8_float_layers"
#: QuantizeLinear / DequantizeLinear take fp16 inputs and scales from opset 19 on.
FP16_QDQ_MIN_OPSET = 19


def fp32_node_names(proto: onnx.ModelProto) -> set[str]:
    """Nodes an FP16 graph keeps in FP32: the tail after the head concatenation, L2 norms and the NMS tail."""
    index = GraphIndex.of(proto)
    nms = {n.name for n in proto.graph.node if n.name.startswith(NMS_PREFIX)}
    return tail_nodes(index) | norm_nodes(index) | nms


def convert_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """fp16 weights and compute, fp32 inputs/outputs; the tail, L2 norms and NMS stay fp32 (`fp32_node_names`)."""
    try:
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    except ImportError as err:
        raise ExportError("--precision fp16 needs onnxruntime.transformers.float16 (part of onnxruntime)") from err
    keep = sorted(fp32_node_names(proto))
    try:
        converted = convert_float_to_float16(
            proto,
            keep_io_types=True,
            op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP16_KEEP_FP32_OPS],
            node_block_list=keep,
        )
    except Exception as err:  # noqa: BLE001 - converter failures → one line
        raise ExportError(f"fp16 conversion failed: {err}") from err
    return topological_sort(collapse_cast_round_trips(_dedupe_casts(converted)))


def _dedupe_casts(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Drop repeated boundary Casts: the converter inserts one per fp32 consumer of an fp16 tensor, all with the
    same output name (invalid SSA) and the same input and type."""
    seen: set[str] = set()
    keep = []
    for n in proto.graph.node:
        if n.op_type == "Cast" and n.output[0] in seen:
            continue
        seen.update(n.output)
        keep.append(n)
    del proto.graph.node[:]
    proto.graph.node.extend(keep)
    return proto


def collapse_cast_round_trips(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Remove fp32 → Cast(fp16) → Cast(fp32) pairs (the converter puts one between adjacent fp32 nodes): readers
    of the second Cast read the fp32 tensor itself; a graph output keeps its name (its producer's output is renamed)."""
    from onnx import TensorProto

    g = proto.graph
    outputs = {o.name for o in g.output}
    fixed = {i.name for i in g.input} | {t.name for t in g.initializer}
    while True:
        producer = {o: n for n in g.node for o in n.output}
        pair = next(
            ((c32, c16) for c32 in g.node if _cast_to(c32) == TensorProto.FLOAT
             and (c16 := producer.get(c32.input[0])) is not None and _cast_to(c16) == TensorProto.FLOAT16
             and not (c32.output[0] in outputs and c16.input[0] in fixed | outputs)),
            None,
        )
        if pair is None:
            break
        c32, c16 = pair
        old, new = c32.output[0], c16.input[0]
        if old in outputs:  # keep the graph output's name: rename the fp32 tensor instead
            old, new = new, old
        g.node.remove(c32)
        for n in g.node:
            for k, name in enumerate(n.input):
                if name == old:
                    n.input[k] = new
            for k, name in enumerate(n.output):
                if name == old:
                    n.output[k] = new
        if not any(c16.output[0] in n.input for n in g.node) and c16.output[0] not in outputs:
            g.node.remove(c16)
        stale = {old, c32.output[0], c16.output[0]}
        keep = [v for v in g.value_info if v.name not in stale]
        del g.value_info[:]
        g.value_info.extend(keep)
    return proto


def _cast_to(node: onnx.NodeProto) -> int | None:
    if node.op_type != "Cast":
        return None
    return next((a.i for a in node.attribute if a.name == "to"), None)


def topological_sort(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Reorder graph nodes so every input is produced before use (the fp16 converter appends its casts last)."""
    graph = proto.graph
    nodes = list(graph.node)
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    producers = {out: idx for idx, n in enumerate(nodes) for out in n.output}
    deps = [{producers[i] for i in n.input if i not in ready and i in producers} for n in nodes]
    users: dict[int, list[int]] = {}
    for idx, d in enumerate(deps):
        for p in d:
            users.setdefault(p, []).append(idx)
    pending = [len(d) for d in deps]
    queue = [idx for idx, c in enumerate(pending) if c == 0]
    order: list[int] = []
    while queue:
        idx = queue.pop(0)
        order.append(idx)
        for u in users.get(idx, ()):
            pending[u] -= 1
            if pending[u] == 0:
                queue.append(u)
    if len(order) != len(nodes):
        raise ExportError("graph has a cycle after fp16 conversion")
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)
    return proto


def quantize_int8(
    proto: onnx.ModelProto, spec: ModelSpec, cfg: CalibrationConfig
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The Q/DQ int8 graph and a `calibration` record for the manifest (data, method, image count, caches).

    `cfg.high_precision` is the type of everything not quantized (fp16: what TensorRT runs fastest under strong
    typing; the tail and L2 norms stay fp32 either way)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    tensors, info = calibration_tensors(cfg, spec.preprocess)
    if tensors.shape[0] == 0:
        raise ExportError(f"calibration set {cfg.data!r} is empty: INT8 needs at least one image")
    model_bytes = proto.SerializeToString()
    ranges = ranges_cache_path(cfg, hashlib.sha256(model_bytes).hexdigest(), spec.preprocess)
    ranges_hit = ranges is not None and ranges.is_file()
    inp = proto.graph.input[0]
    dim0 = inp.type.tensor_type.shape.dim[0]
    fixed = None if dim0.dim_param else int(dim0.dim_value)
    reader = ArrayCalibrationReader(tensors, inp.name, cfg.batch_size, fixed)
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[cfg.method]
    exclude = [n.name for n in proto.graph.node if n.name.startswith(NMS_PREFIX)]
    exclude += _checked_float_layers(proto, cfg.float_layers)
    if ranges is not None:
        ranges.parent.mkdir(parents=True, exist_ok=True)
    ort_logger = logging.getLogger("onnxruntime")
    level = logging.root.level
    with tempfile.TemporaryDirectory(prefix="ssdtrt-int8-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(model_bytes)
        try:
            logging.root.setLevel(logging.ERROR)  # ORT's quantizer logs advice on the root logger
            ort_logger.setLevel(logging.ERROR)
            cache_ok = "calibration_cache_path" in inspect.signature(quantize_static).parameters
            if not cache_ok:
                raise ExportError("int8 needs an onnxruntime whose quantize_static takes calibration_cache_path")
            ranges_file = ranges if ranges is not None else Path(tmp) / "ranges.json"
            if not ranges_hit:
                _calibrate_ranges(src, reader, ranges_file, Path(tmp), cfg.method)
            ranges_file = _override_ranges(cfg, proto, spec, model_bytes, ranges_file, reader, Path(tmp))
            with contextlib.redirect_stdout(io.StringIO()):  # ORT prints calibration progress
                quantize_static(
                    str(src),
                    str(dst),
                    reader,
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(INT8_OP_TYPES),
                    per_channel=True,
                    reduce_range=cfg.reduce_range,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=exclude,
                    calibrate_method=method,
                    calibration_providers=["CPUExecutionProvider"],
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                                   "OpTypesToExcludeOutputQuantization": list(INT8_OP_TYPES)},
                    calibration_cache_path=str(ranges_file),
                )
            quantized = unround_inputs(onnx.load(str(dst)), cfg.float_layers)
            residual_adds = quantize_residuals(quantized, _load_ranges(ranges_file))
        except ExportError:
            raise
        except Exception as err:  # noqa: BLE001 - ORT quantizer failures → one line
            raise ExportError(f"int8 quantization failed: {type(err).__name__}: {str(err).splitlines()[0]}") from err
        finally:
            logging.root.setLevel(level)
    if cfg.high_precision == "fp16":
        quantized = convert_fp16(upgrade_opset(quantized, FP16_QDQ_MIN_OPSET))
    mark_float_layers(quantized, cfg.float_layers)
    record = {
        "calibration": {
            **info,
            "ranges_cache": str(ranges) if ranges is not None else None,
            "ranges_cached": ranges_hit,
            "scheme": "QDQ int8 symmetric, per-channel weights, residual Add inputs quantized",
            "weight_bits": 7 if cfg.reduce_range else 8,
            "op_types": list(INT8_OP_TYPES),
            "residual_adds": len(residual_adds),
            "high_precision": cfg.high_precision,
            "float_layers": list(cfg.float_layers),
            "fixed_ranges": len(cfg.fixed_ranges),
            "range_layers": {"method": cfg.range_method, "layers": list(cfg.range_layers)} if cfg.range_layers else None,
        }
    }
    return quantized, record


def _checked_float_layers(proto: onnx.ModelProto, names: tuple[str, ...]) -> list[str]:
    """`names` if each is a quantizable node of `proto` (a typo would silently quantize the layer)."""
    known = {n.name for n in proto.graph.node if n.op_type in INT8_OP_TYPES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ExportError(f"float layers not in the graph (or not Conv/Gemm/MatMul): {', '.join(unknown[:5])}")
    return list(names)


def mark_float_layers(proto: onnx.ModelProto, names: tuple[str, ...] | list[str]) -> None:
    """Record the layers left float on purpose in the graph's metadata (`FLOAT_LAYERS_KEY`, a JSON list), so
    `ssdtrt lint` tells them from convs a quantizer forgot; an empty list removes the entry."""
    import json

    keep = [p for p in proto.metadata_props if p.key != FLOAT_LAYERS_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    if names:
        entry = proto.metadata_props.add()
        entry.key, entry.value = FLOAT_LAYERS_KEY, json.dumps(sorted(names))


def declared_float_layers(proto: onnx.ModelProto) -> set[str]:
    """The node names `mark_float_layers` recorded (empty when none)."""
    import json

    for p in proto.metadata_props:
        if p.key == FLOAT_LAYERS_KEY:
            return set(json.loads(p.value))
    return set()


def _override_ranges(cfg: CalibrationConfig, proto: onnx.ModelProto, spec: ModelSpec, model_bytes: bytes, base: Path,
                     reader: ArrayCalibrationReader, tmp: Path) -> Path:
    """`base` with the inputs of `cfg.range_layers` calibrated by `cfg.range_method` (cached like `base`), then
    `cfg.fixed_ranges` (QAT's) applied; `base` itself when there is nothing to override."""
    if cfg.fixed_ranges:
        base = _fixed_ranges(dict(cfg.fixed_ranges), base, tmp / "fixed.json")
    if not cfg.range_layers:
        return base
    alt = ranges_cache_path(replace(cfg, method=cfg.range_method), hashlib.sha256(model_bytes).hexdigest(),
                            spec.preprocess) or tmp / "alt_ranges.json"
    if not alt.is_file():
        _calibrate_ranges(tmp / "fp32.onnx", reader, alt, tmp, cfg.range_method)
    return _merge_ranges(proto, cfg.range_layers, base, alt, tmp / "merged.json")


def _fixed_ranges(absmax: dict[str, float], base: Path, out: Path) -> Path:
    """`base` with the given tensors' ranges set to ±absmax (QAT's); every given tensor must be in `base`."""
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, load_tensors_data, save_tensors_data

    data = load_tensors_data(base)
    missing = sorted(set(absmax) - set(data))
    if missing:
        raise ExportError(f"fixed (QAT) ranges for tensors this graph does not calibrate: {', '.join(missing[:3])}")
    merged = {k: (TensorData(lowest=np.float32(-absmax[k]), highest=np.float32(absmax[k])) if k in absmax else data[k])
              for k in data}
    save_tensors_data(TensorsData(data.calibration_method, merged), out)
    return out


def _merge_ranges(proto: onnx.ModelProto, layers: tuple[str, ...], base: Path, alt: Path, out: Path) -> Path:
    """`base` ranges with the inputs of `layers` taken from `alt` (another calibration method), saved to `out`."""
    from onnxruntime.quantization.calibrate import TensorsData, load_tensors_data, save_tensors_data

    _checked_float_layers(proto, layers)
    inputs = {n.input[0] for n in proto.graph.node if n.name in set(layers)}
    first, second = load_tensors_data(base), load_tensors_data(alt)
    merged = {k: (second[k] if k in inputs and k in second else first[k]) for k in first}
    save_tensors_data(TensorsData(first.calibration_method, merged), out)
    return out


def _load_ranges(path: Path) -> dict[str, tuple[float, float]]:
    from onnxruntime.quantization.calibrate import load_tensors_data

    data = load_tensors_data(path)
    return {name: tuple(float(np.asarray(v).reshape(-1)[0]) for v in data[name].range_value) for name in data}


def upgrade_opset(proto: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """The graph at default-domain opset >= `opset` (onnx's version converter; a no-op when already there)."""
    from onnx import version_converter

    current = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if current >= opset:
        return proto
    try:
        return version_converter.convert_version(proto, opset)
    except Exception as err:  # noqa: BLE001 - converter failures → one line
        raise ExportError(f"cannot convert the graph from opset {current} to {opset}: {err}") from err


def _calibrate_ranges(model_path: Path, reader: ArrayCalibrationReader, ranges: Path, tmp: Path, method: str) -> None:
    """Activation ranges with onnxruntime's calibrator, fed `CALIB_CHUNK_BATCHES` batches at a time, into `ranges`.

    onnxruntime keeps every intermediate tensor of every calibration image until its single `collect_data` call
    ends (≈120 MB per SSD300-ResNet50 image: 256 images exhaust 24 GB); fed in chunks, min/max merge exactly and
    histograms (percentile, entropy) merge bin-wise, so memory stays at one chunk. Entropy uses TensorRT's bins.
    """
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    options = ({"num_bins": ENTROPY_NUM_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS, "symmetric": True}
               if method == "entropy" else {})  # minmax / percentile: quantize_static's own defaults
    calibrator = create_calibrator(
        model_path,
        list(INT8_OP_TYPES),
        augmented_model_path=str(tmp / "augmented.onnx"),
        calibrate_method=methods[method],
        providers=["CPUExecutionProvider"],
        extra_options=options,
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints progress
        for chunk in reader.chunks(CALIB_CHUNK_BATCHES):
            calibrator.collect_data(chunk)
        tensors = calibrator.compute_data()
    save_tensors_data(tensors, ranges)
    reader.rewind()
