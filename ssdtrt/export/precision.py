"""Precision variants of an exported graph, in the form TensorRT 11 takes them (precision lives in the ONNX).

FP16: weights and compute in fp16, inputs/outputs stay fp32 (keep_io_types); Softmax, Exp (box decode) and the
NMS tail stay fp32. INT8: Q/DQ from onnxruntime.quantization — symmetric int8 activations and weights (zero points
0), per-channel weights, biases left in fp32 — on Conv/Gemm/MatMul inputs, calibrated on images preprocessed by
`ssdtrt.preprocess` (see `calibration`). Both run in ONNX Runtime on CPU, so they can be scored before any engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssdtrt.config import ModelSpec
from ssdtrt.errors import ExportError
from ssdtrt.export.calibration import (
    ArrayCalibrationReader,
    CalibrationConfig,
    calibration_tensors,
    ranges_cache_path,
)
from ssdtrt.export.nms_graph import NMS_PREFIX

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


def convert_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """fp16 weights and compute, fp32 inputs/outputs; numerically sensitive ops and the NMS tail stay fp32."""
    try:
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    except ImportError as err:
        raise ExportError("--precision fp16 needs onnxruntime.transformers.float16 (part of onnxruntime)") from err
    nms_nodes = [n.name for n in proto.graph.node if n.name.startswith(NMS_PREFIX)]
    try:
        converted = convert_float_to_float16(
            proto,
            keep_io_types=True,
            op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP16_KEEP_FP32_OPS],
            node_block_list=nms_nodes,
        )
    except Exception as err:  # noqa: BLE001 - converter failures → one line
        raise ExportError(f"fp16 conversion failed: {err}") from err
    return topological_sort(converted)


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
    """The Q/DQ int8 graph and a `calibration` record for the manifest (data, method, image count, caches)."""
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
            ranges_file = ranges if ranges is not None else Path(tmp) / "ranges.json"
            if cache_ok and not ranges_hit:
                _calibrate_ranges(src, reader, ranges_file, Path(tmp), cfg.method)
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
                    **({"calibration_cache_path": str(ranges_file)} if cache_ok else {}),
                )
        except ExportError:
            raise
        except Exception as err:  # noqa: BLE001 - ORT quantizer failures → one line
            raise ExportError(f"int8 quantization failed: {type(err).__name__}: {str(err).splitlines()[0]}") from err
        finally:
            logging.root.setLevel(level)
        quantized = onnx.load(str(dst))
    record = {
        "calibration": {
            **info,
            "ranges_cache": str(ranges) if ranges is not None else None,
            "ranges_cached": ranges_hit,
            "scheme": "QDQ int8 symmetric, per-channel weights, bias fp32",
            "weight_bits": 7 if cfg.reduce_range else 8,
            "op_types": list(INT8_OP_TYPES),
        }
    }
    return quantized, record


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
