"""`ssdtrt export --precision int8 --max-drop PTS`: the checkpoint side of `ssdtrt.export.fallback` and its output."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_fallback(
    checkpoint: Path,
    out: Path,
    *,
    calibration: Any,
    eval_data: str,
    eval_split: str,
    eval_images: int,
    max_drop: float,
    status: Any,
    console: Any,
    export_kwargs: dict[str, Any],
    overrides: dict[str, Any],
    range_method: str | None = None,
) -> Any:
    """Load the checkpoint, search the float layers, print each step; returns the ExportResult of the file written."""
    from ssdtrt.core.errors import CheckpointError
    from ssdtrt.export.fallback import fallback_export
    from ssdtrt.export.onnx_export import resolve_postprocess
    from ssdtrt.io.files import sha256_file
    from ssdtrt.model.checkpoint import load_model

    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: no such checkpoint file")
    model = load_model(checkpoint, "cpu")
    post = resolve_postprocess(model.spec.postprocess, **overrides)
    source = {"checkpoint": str(checkpoint), "sha256": sha256_file(checkpoint)}

    def progress(msg: str) -> None:
        status.update(msg)
        console.log(msg)

    result, fb = fallback_export(
        model, out, calibration=calibration, eval_data=eval_data, eval_split=eval_split, eval_images=eval_images,
        max_drop_pts=max_drop, range_method=range_method, progress=progress, postprocess=post, source=source, **export_kwargs,
    )
    console.print(f"--max-drop {max_drop:g}: drop {fb.drop_pts:.2f} mAP pts (FP32 {fb.fp32_map:.4f} → "
                  f"{fb.int8_map:.4f}) with {len(fb.float_layers)} of {len(fb.ranking)} layers float")
    for name in fb.float_layers:
        console.print(f"  float: {name}")
    for name in fb.range_layers:
        console.print(f"  INT8 with {fb.range_method} input range: {name}")
    return result
