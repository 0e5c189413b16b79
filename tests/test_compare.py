"""`ssdtrt compare`: per-output errors, detection match rate, pass / fail and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ssdtrt.cli.app as cli
from ssdtrt.compare import compare_models, load_images, load_subject, match_detections
from ssdtrt.core.detections import Detections
from ssdtrt.core.errors import ManifestError
from ssdtrt.export.onnx_export import export_checkpoint
from ssdtrt.model.checkpoint import save_checkpoint
from ssdtrt.model.ssd import build_model


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.manual_seed(4)
    root = tmp_path_factory.mktemp("cmp")
    ckpt = root / "small.pt"
    save_checkpoint(ckpt, build_model("ssd-small"))
    out = {"ckpt": ckpt}
    for mode, precision in (("raw", "fp32"), ("nms", "fp32"), ("decoded", "fp16")):
        out[f"{mode}_{precision}"] = export_checkpoint(
            ckpt, root / f"{mode}_{precision}.onnx", mode=mode, precision=precision, dynamic_batch=True
        ).onnx_path
    return out


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return load_images("synthetic", 8)


def test_checkpoint_vs_raw_onnx_passes(files, images) -> None:
    a, b = load_subject(files["ckpt"]), load_subject(files["raw_fp32"])
    report = compare_models(a, b, images, atol=1e-4, rtol=0.0)
    names = {o.name: o for o in report.outputs}
    assert set(names) == {"locs", "logits"}
    assert all(o.max_abs <= 1e-4 and o.passed for o in names.values())
    assert report.detections_a == report.detections_b > 0 and report.match_rate == 1.0 and report.passed


def test_checkpoint_vs_nms_onnx_matches_detections(files, images) -> None:
    report = compare_models(load_subject(files["ckpt"]), load_subject(files["nms_fp32"]), images)
    assert report.outputs == [] and report.match_rate == 1.0 and report.passed


def test_cli_fails_on_tight_tolerance_and_writes_json(files, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("compare",))
    js = tmp_path / "cmp.json"
    args = ["compare", str(files["ckpt"]), str(files["decoded_fp16"]), "--images", "4"]
    assert cli.main([*args, "--atol", "1e-7", "--rtol", "0", "--json", str(js)]) == 1
    data = json.loads(js.read_text())
    assert not data["passed"] and {o["name"] for o in data["outputs"]} == {"boxes", "scores"}
    assert all(o["max_abs"] > 1e-7 for o in data["outputs"])
    assert cli.main([*args, "--atol", "2e-2", "--min-match", "0.5"]) == 0
    assert "PASS" in capsys.readouterr().out


def test_match_detections_by_label_and_iou() -> None:
    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9], [0.0, 0.0, 0.2, 0.2]], np.float32)
    a = Detections(boxes, np.array([0.9, 0.8, 0.7], np.float32), np.array([1, 2, 3]))
    moved = boxes.copy()
    moved[1] += 0.05  # IoU well below 0.99
    b = Detections(moved, np.array([0.9, 0.8, 0.7], np.float32), np.array([1, 2, 4]))  # last: other label
    assert match_detections(a, b) == 1
    assert match_detections(a, a) == 3
    assert match_detections(a, Detections(boxes[:0], np.zeros(0, np.float32), np.zeros(0, np.int64))) == 0


def test_unknown_model_file(tmp_path) -> None:
    with pytest.raises(ManifestError):
        load_subject(tmp_path / "model.bin")
