"""`ssdtrt build-engine`: exported ONNX → TensorRT `.plan` or OpenVINO IR (`.xml` + `.bin`), each with a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ssdtrt.cli.common import choice_enum
from ssdtrt.core.manifest import INPUT_FORMATS


EngineBackend = choice_enum("EngineBackend", ("tensorrt", "openvino"))
Placement = choice_enum("Placement", ("engine", "host"))  # the build's side of PREPROCESS/POSTPROCESS placements
InputFormat = choice_enum("InputFormat", INPUT_FORMATS)
OVPrecision = choice_enum("OVPrecision", ("f32", "bf16"))


def register(app: typer.Typer) -> None:
    app.command("build-engine")(build_engine_cmd)


def build_engine_cmd(
    model: Annotated[Path, typer.Argument(help="An exported ONNX (its manifest .json beside it).")],
    backend: Annotated[EngineBackend, typer.Option("--backend", help="tensorrt (NVIDIA GPU) or openvino (CPU).")] = (
        EngineBackend.tensorrt
    ),
    out: Annotated[
        Optional[Path],  # noqa: UP007 - typer needs Optional on older Pythons
        typer.Option("--out", help="Engine path without or with suffix (default engines/<onnx name>.plan|.xml)."),
    ] = None,
    min_batch: Annotated[int, typer.Option("--min-batch", help="TensorRT profile: smallest batch (dynamic ONNX).")] = 1,
    opt_batch: Annotated[
        Optional[int], typer.Option("--opt-batch", help="TensorRT profile: batch to tune for (default: max).")  # noqa: UP007
    ] = None,
    max_batch: Annotated[
        Optional[int], typer.Option("--max-batch", help="TensorRT profile: largest batch (default 8).")  # noqa: UP007
    ] = None,
    workspace_mb: Annotated[
        Optional[int], typer.Option("--workspace-mb", help="TensorRT workspace limit in MiB.")  # noqa: UP007
    ] = None,
    timing_cache: Annotated[
        Optional[Path], typer.Option("--timing-cache", help="TensorRT timing cache file (read if present, then saved).")  # noqa: UP007
    ] = None,
    version_compatible: Annotated[
        bool, typer.Option("--version-compatible", help="TensorRT: plan loadable by newer TensorRT (same major; 10.x plans also by 11.x).")
    ] = False,
    gpu: Annotated[int, typer.Option("--gpu", help="TensorRT: index of the GPU to build on (and recorded).")] = 0,
    detailed_profile: Annotated[
        bool, typer.Option("--detailed-profile", help="TensorRT: keep per-layer details (precisions) for IEngineInspector.")
    ] = False,
    precision: Annotated[
        OVPrecision, typer.Option("--precision", help="OpenVINO inference precision for fp32 graphs: f32 or bf16.")
    ] = OVPrecision.f32,
    no_validate: Annotated[bool, typer.Option("--no-validate", help="OpenVINO: skip the test compile.")] = False,
    postprocess: Annotated[
        Optional[Placement],  # noqa: UP007
        typer.Option("--postprocess", help="OpenVINO, raw exports: engine = softmax + DetectionOutput in the IR "
                     "(the outputs of an nms export), host = raw heads out, decoded by numpy. Default for a raw export: "
                     "engine with --input uint8-nhwc (benchmarks/throughput/placement.md). The raw-heads IR is kept "
                     "beside an engine build as <name>-heads.xml."),
    ] = None,
    input_format: Annotated[
        Optional[InputFormat],  # noqa: UP007
        typer.Option("--input", help="OpenVINO: float32-nchw (host normalizes) or uint8-nhwc (the decoded RGB image "
                     "at network size; type, layout and normalization in the IR). Default: uint8-nhwc when --postprocess is "
                     "not given on a raw export, else the ONNX's input."),
    ] = None,
) -> None:
    """Build a deployable engine from an exported ONNX (precision comes from the ONNX: fp32, fp16 or int8 Q/DQ)."""
    from ssdtrt.cli.common import console

    con = console()
    if backend is EngineBackend.tensorrt and (postprocess is not None or input_format is not None):
        from ssdtrt.core.errors import EngineBuildError

        raise EngineBuildError("--postprocess / --input are OpenVINO options; for TensorRT export with --mode nms "
                               "and --input uint8-nhwc instead")
    if backend is EngineBackend.tensorrt:
        from ssdtrt.engines.tensorrt_builder import build_tensorrt

        import warnings

        with con.status(f"building a TensorRT engine from {model} (minutes for large models)"), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = build_tensorrt(
                model, out, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, workspace_mb=workspace_mb,
                timing_cache=timing_cache, version_compatible=version_compatible, device_index=gpu,
                detailed_profile=detailed_profile,
            )
        for warning in caught:  # e.g. a timing cache from another GPU: one line each, the build went on
            console(stderr=True).print(f"[yellow]warning:[/] {warning.message}")
        eng = result.manifest.engine
        con.print(
            f"wrote {result.engine_path} ({eng['plan_bytes'] / 1e6:.1f} MB, {result.manifest.precision}, TensorRT "
            f"{eng['tensorrt_version']}, {eng['gpu_name']} sm {eng['compute_capability']}, built in "
            f"{eng['build_seconds']:.1f} s) and {result.manifest_path}"
        )
        return
    from ssdtrt.engines.openvino_builder import DEFAULT_INPUT, DEFAULT_POSTPROCESS, build_openvino, read_onnx_manifest

    raw = read_onnx_manifest(model)[1].export_mode == "raw"
    placement = postprocess.value if postprocess is not None else (DEFAULT_POSTPROCESS if raw else "host")
    chosen_input = input_format.value if input_format is not None else (
        DEFAULT_INPUT if raw and postprocess is None else None)  # None: the ONNX's input
    with con.status(f"converting {model} to OpenVINO IR"):
        result = build_openvino(model, out, precision_hint=precision.value, validate=not no_validate,
                                postprocess=placement, input_format=chosen_input)
    compiled = result.manifest.engine.get("compiled_inference_precision")
    note = f", compiled as {compiled}" if compiled else ""
    con.print(
        f"wrote {result.engine_path} (+ .bin, {result.manifest.precision}, hint {precision.value}{note}) and "
        f"{result.manifest_path}"
    )
    if result.reference is not None:
        con.print(f"  postprocess: {placement}, input: {result.manifest.input_format}; "
                  f"raw-heads reference {result.reference.engine_path}")
    if precision is OVPrecision.bf16 and compiled and compiled != "bf16":
        console(stderr=True).print(
            f"[yellow]note:[/yellow] this CPU has no bf16 support; OpenVINO compiled it as {compiled}"
        )
