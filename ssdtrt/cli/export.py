"""`ssdtrt export`: checkpoint → ONNX (raw | decoded | nms; fp32 | fp16 | int8) + manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ssdtrt.cli.common import choice_enum
from ssdtrt.core.manifest import INPUT_FORMATS
from ssdtrt.export.calibration import CALIB_METHODS, HIGH_PRECISIONS
from ssdtrt.export.onnx_export import MODES


Mode = choice_enum("Mode", MODES)
Precision = choice_enum("Precision", ("fp32", "fp16", "int8"))  # bf16 is an engine-build choice, not an export one
InputFormat = choice_enum("InputFormat", INPUT_FORMATS)
CalibMethod = choice_enum("CalibMethod", CALIB_METHODS)
Int8Float = choice_enum("Int8Float", HIGH_PRECISIONS)


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)


def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="An ssdtrt checkpoint (.pt) that `ssdtrt.load_model` reads.")],
    out: Annotated[
        Optional[Path],  # noqa: UP007
        typer.Option("--out", help="Output .onnx (default export/<checkpoint>_<mode>[_<precision>].onnx)."),
    ] = None,
    mode: Annotated[Mode, typer.Option("--mode", help="raw heads, decoded boxes+scores, or NMS in the graph.")] = Mode.raw,
    batch: Annotated[int, typer.Option("--batch", help="Static batch size.")] = 1,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="Dynamic batch axis (overrides --batch).")] = False,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset (>= 13).")] = 17,
    simplify: Annotated[bool, typer.Option("--simplify", help="Run onnxslim and re-check parity.")] = False,
    precision: Annotated[Precision, typer.Option("--precision", help="fp32, fp16 (fp32 I/O) or int8 Q/DQ.")] = Precision.fp32,
    calib_data: Annotated[
        Optional[str],  # noqa: UP007
        typer.Option("--calib-data", help="INT8 calibration dataset spec (e.g. 'synthetic', 'voc:PATH')."),
    ] = None,
    calib_images: Annotated[int, typer.Option("--calib-images", help="Calibration images.")] = 256,
    calib_method: Annotated[CalibMethod, typer.Option("--calib-method", help="Activation range method.")] = CalibMethod.minmax,
    calib_split: Annotated[str, typer.Option("--calib-split", help="Dataset split used for calibration.")] = "train",
    reduce_range: Annotated[
        bool,
        typer.Option("--reduce-range", help="INT8: 7-bit weights. Use for CPU int8 (OpenVINO / ONNX Runtime) on CPUs "
                     "without VNNI (AVX2 only), where 8-bit weights saturate; TensorRT and VNNI/AMX CPUs want 8 bits."),
    ] = False,
    int8_float: Annotated[
        Int8Float,
        typer.Option("--int8-float", help="INT8: type of the non-quantized layers. fp16 for TensorRT (strongly typed: "
                     "the ONNX decides); fp32 for CPU int8 (ONNX Runtime / OpenVINO run fp16 Q/DQ 2-4x slower). "
                     "Decode, softmax, NMS and L2Norm stay fp32 either way."),
    ] = Int8Float.fp16,
    max_drop: Annotated[
        Optional[float],  # noqa: UP007
        typer.Option("--max-drop", help="INT8: mAP budget in points vs FP32 (on --eval-data); the most sensitive "
                     "layers return to the --int8-float type until the drop fits (ssdtrt.export.fallback)."),
    ] = None,
    eval_data: Annotated[
        Optional[str],  # noqa: UP007
        typer.Option("--eval-data", help="--max-drop: dataset spec scored (default: the --calib-data source)."),
    ] = None,
    eval_split: Annotated[str, typer.Option("--eval-split", help="--max-drop: split scored.")] = "val",
    range_fallback: Annotated[
        Optional[CalibMethod],  # noqa: UP007
        typer.Option("--range-fallback", help="--max-drop: first give the most sensitive layers' inputs this "
                     "method's ranges (all convs stay INT8, no speed cost); float layers only if that cannot fit."),
    ] = None,
    eval_images: Annotated[int, typer.Option("--eval-images", help="--max-drop: images scored per candidate.")] = 200,
    float_layers: Annotated[
        Optional[list[str]],  # noqa: UP007
        typer.Option("--float-layer", help="INT8: leave this Conv node (ONNX name, see `ssdtrt sensitivity`) "
                     "unquantized; repeatable."),
    ] = None,
    score_threshold: Annotated[
        Optional[float], typer.Option("--score-threshold", help="nms: keep scores above this (default: preset).")  # noqa: UP007
    ] = None,
    iou_threshold: Annotated[Optional[float], typer.Option("--iou-threshold", help="nms: IoU above this suppresses.")] = None,  # noqa: UP007
    topk_candidates: Annotated[
        Optional[int], typer.Option("--topk-candidates", help="nms: candidates per class before NMS (0 = all).")  # noqa: UP007
    ] = None,
    max_detections: Annotated[
        Optional[int], typer.Option("--max-detections", help="nms: detections per image (K, the padded size).")  # noqa: UP007
    ] = None,
    min_size: Annotated[Optional[float], typer.Option("--min-size", help="nms: min box side, normalized.")] = None,  # noqa: UP007
    candidates_per_class: Annotated[
        Optional[int],  # noqa: UP007
        typer.Option("--candidates-per-class", help="nms: explicit per-class candidate cap baked into the graph "
                     "(default: min(top-k, 2000), within TensorRT's NMS/TopK limits; max 3839)."),
    ] = None,
    input_format: Annotated[
        InputFormat,
        typer.Option("--input", help="float32-nchw (host normalizes) or uint8-nhwc (the decoded RGB image at network "
                     "size; Cast, normalization and transpose in the graph: a quarter of the host-to-device bytes)."),
    ] = InputFormat.float32_nchw,
) -> None:
    """Export a checkpoint to ONNX with a manifest beside it (checked with onnx.checker and strict shape inference)."""
    from ssdtrt.cli.common import console
    from ssdtrt.core.errors import ExportError
    from ssdtrt.export.calibration import CalibrationConfig, cache_dir_for
    from ssdtrt.export.onnx_export import default_out_path, export_checkpoint

    con_err = console(stderr=True)
    if precision is Precision.int8 and not calib_data:
        raise ExportError("--precision int8 needs --calib-data SPEC (e.g. --calib-data synthetic)")
    out_path = out or default_out_path(checkpoint, mode.value, precision.value)
    calibration = None
    if precision is Precision.int8:
        calibration = CalibrationConfig(
            data=str(calib_data), num_images=calib_images, method=calib_method.value, split=calib_split,
            reduce_range=reduce_range, cache_dir=cache_dir_for(out_path), high_precision=int8_float.value,
            float_layers=tuple(float_layers or ()), fixed_ranges=_qat_ranges(checkpoint, calib_method.value, con_err),
        )
    if max_drop is not None and precision is not Precision.int8:
        raise ExportError("--max-drop applies to --precision int8")
    overrides = dict(
        score_threshold=score_threshold, iou_threshold=iou_threshold, topk_candidates=topk_candidates,
        max_detections=max_detections, min_size=min_size, candidates_per_class=candidates_per_class,
    )
    con = console()
    with con.status(f"exporting {checkpoint} → {out_path} ({mode.value}, {precision.value})") as status:
        if max_drop is None:
            result = export_checkpoint(
                checkpoint, out_path, mode=mode.value, precision=precision.value, batch=batch,
                dynamic_batch=dynamic_batch, opset=opset, simplify=simplify, postprocess_overrides=overrides,
                calibration=calibration, input_format=input_format.value,
            )
        else:
            from ssdtrt.cli.export_fallback import run_fallback

            result = run_fallback(
                checkpoint, out_path, calibration=calibration, eval_data=eval_data or str(calib_data),
                eval_split=eval_split, eval_images=eval_images, max_drop=max_drop, status=status, console=con,
                range_method=range_fallback.value if range_fallback else None,
                export_kwargs=dict(mode=mode.value, batch=batch, dynamic_batch=dynamic_batch, opset=opset,
                                   simplify=simplify, input_format=input_format.value), overrides=overrides,
            )
    m = result.manifest
    ios = lambda ts: ", ".join(f"{t.name} {t.shape} {t.dtype}" for t in ts)  # noqa: E731
    con.print(f"wrote {result.onnx_path} + {result.manifest_path.name}: {m.model_spec.name}, mode {m.export_mode}, "
              f"precision {m.precision}, {m.num_classes} classes")
    con.print(f"  inputs:  {ios(m.inputs)}")
    con.print(f"  outputs: {ios(m.outputs)}")
    if m.export_mode == "nms":
        con.print(f"  postprocess in graph: {m.postprocess}")
    calib = m.source.get("calibration")
    if calib:
        con.print(f"  calibration: {calib['method']} on {calib['num_images']} images of {calib['data']} "
                  f"({'cached tensors' if calib['cached'] else 'read'}; ranges {'cached' if calib['ranges_cached'] else 'computed'})")



def _qat_ranges(checkpoint: Path, method: str, con) -> tuple[tuple[str, float], ...]:  # noqa: ANN001 - rich Console
    """The activation ranges a `ssdtrt train --qat` checkpoint trained with (none for other checkpoints)."""
    from ssdtrt.train.qat_run import qat_ranges

    ranges, qat_method = qat_ranges(checkpoint)
    if ranges and qat_method != method:
        con.print(f"note: {checkpoint} was fine-tuned with {qat_method} ranges; using them (not {method}) for the "
                  "tensors QAT quantized")
    return ranges
