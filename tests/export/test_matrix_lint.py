"""Every export of every preset × mode × precision lints clean — op support, Q/DQ form and the placement rules of
`lint_qdq` (residual Q/DQ, fp16 L2 norms, cast round trips, weight axes) — with no warning either.

ssd-small runs in the default suite; SSD300-ResNet50 / -VGG16 take ~1–2 min each on 2 cores and are `slow`. Their
special structures (ResNet's [Conv, Conv] downsample Add, VGG's L2Norm) are covered in the light path by
`test_precision_placement.py`, which builds the same structures in a tiny graph."""

from __future__ import annotations

import pytest
import torch

from ssdtrt.export.calibration import CalibrationConfig
from ssdtrt.export.lint import lint_onnx
from ssdtrt.export.onnx_export import MODES, export_model
from ssdtrt.model.ssd import build_model

PRECISIONS = ("fp32", "fp16", "int8")
PRESETS = [
    "ssd-small",
    pytest.param("ssd300-resnet50", marks=pytest.mark.slow),
    pytest.param("ssd300-vgg16", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_mode_and_precision_lints_clean(preset, tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model(preset).eval()
    calib = CalibrationConfig("synthetic", num_images=2, batch_size=2, cache_dir=tmp_path / "calib")
    failures = {}
    for mode in MODES:
        for precision in PRECISIONS:
            out = tmp_path / f"{mode}_{precision}.onnx"
            res = export_model(model, out, mode=mode, precision=precision, dynamic_batch=mode != "raw",
                               calibration=calib if precision == "int8" else None)
            report = lint_onnx(res.onnx_path)
            if report.issues:
                failures[(mode, precision)] = [str(i) for i in report.issues]
            if precision == "int8" and preset == "ssd300-resnet50":  # all 13 bottleneck Adds read a DQ residual
                assert res.manifest.source["calibration"]["residual_adds"] == 3  # the 3 downsample blocks
            out.unlink()
    assert not failures, failures
