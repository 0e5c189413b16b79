"""`ssdtrt demo` end to end with a tiny budget: every step runs for real and the report holds real figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ssdtrt.demo.job import DemoSettings, run_demo

pytestmark = pytest.mark.integration  # the demo job end to end

TINY = DemoSettings(train_epochs=1, train_images=64, calib_images=8, parity_images=4, bench_warmup=1, bench_iters=3, bench_max_seconds=0.5,
                    annotated_images=2)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    report = run_demo(out, eval_images=16, settings=TINY, log=lines.append)
    return out, report


@pytest.mark.slow
def test_report_files_hold_the_returned_figures(demo: tuple[Path, dict]) -> None:
    out, report = demo
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["map"] == pytest.approx(report["map"]) and on_disk["map50"] == pytest.approx(report["map50"])
    md = (out / "report.md").read_text()
    assert f"{report['map']:.4f}" in md and "| variant |" in md and "e2e p50 ms" in md
    for path in report["images"]:
        assert Path(path).is_file() and Path(path).stat().st_size > 0
    assert set(report["steps_s"]) == {"train", "export", "calibrate_int8", "engines", "map", "parity", "latency", "images"}
    assert report["total_s"] >= sum(report["steps_s"].values()) - 1.0


@pytest.mark.slow
def test_every_variant_is_scored_and_float_variants_agree(demo: tuple[Path, dict]) -> None:
    _, report = demo
    v = report["variants"]
    expected = {"torch-fp32", "onnxruntime-fp32-nms", "onnxruntime-fp16-nms", "onnxruntime-int8-nms",
                "openvino-f32-raw", "openvino-int8-raw"}
    assert expected <= set(v)
    for name in expected:
        assert 0.0 <= v[name]["map"] <= v[name]["map50"] <= 1.0 and Path(v[name]["artifact"]).is_file()
    assert report["map"] == v["torch-fp32"]["map"]
    # same model, same pipeline: fp32 exports score what the checkpoint scores (independent of how well it trained)
    for name in ("onnxruntime-fp32-nms", "openvino-f32-raw"):
        assert v[name]["map"] == pytest.approx(v["torch-fp32"]["map"], abs=2e-3)


@pytest.mark.slow
def test_parity_rows_and_fp32_pairs_pass(demo: tuple[Path, dict]) -> None:
    _, report = demo
    rows = {p["b"]: p for p in report["parity"]}
    assert {"onnxruntime-fp32-raw", "openvino-f32-raw", "onnxruntime-fp16-nms", "onnxruntime-int8-raw",
            "openvino-int8-raw"} <= set(rows)
    for name in ("onnxruntime-fp32-raw", "openvino-f32-raw"):
        assert rows[name]["passed"], rows[name]
        assert rows[name]["outputs"]["logits"]["max_abs"] < 1e-3
    assert rows["onnxruntime-int8-raw"]["outputs"]["logits"]["max_abs"] > 0.0  # int8 really differs
    assert all(r["criteria"] for r in rows.values())
    assert report["parity_pass"] == {name: r["passed"] for name, r in rows.items()}


@pytest.mark.slow
def test_latency_per_backend_and_tensorrt_reason(demo: tuple[Path, dict]) -> None:
    _, report = demo
    p50 = report["latency"]["e2e_p50_ms"]
    for name in ("torch-fp32", "onnxruntime-fp32", "onnxruntime-fp16", "onnxruntime-int8", "openvino-fp32",
                 "openvino-int8"):
        assert name in p50 and math.isfinite(p50[name]) and p50[name] > 0.0, p50
    for row in report["latency"]["results"]:
        assert row["batch_size"] == 1 and row["stages_p50_ms"]["inference"] <= row["e2e_p50_ms"]
    if report["backends"]["tensorrt"] is not None:
        assert report["tensorrt"] == {"built": False, "reason": report["backends"]["tensorrt"]}
        assert "TensorRT: not built" in (Path(report["report_md"])).read_text()
    assert report["machine"]["cpu_cores"] >= 1 and "torch" in report["machine"]["packages"]


@pytest.mark.slow
def test_rerun_reuses_the_checkpoint_only_when_settings_and_file_match(demo: tuple[Path, dict], tmp_path: Path) -> None:
    """An unchanged re-run skips training; other training settings, or a changed checkpoint file, train again."""
    import shutil
    from dataclasses import replace

    from ssdtrt.demo.training import TRAIN_RECORD, reusable_checkpoint

    out, report = demo
    assert report["train"]["reused"] is False and (out / "train" / TRAIN_RECORD).is_file()
    copy = tmp_path / "demo"
    shutil.copytree(out / "train", copy / "train")
    same = replace(TINY, eval_images=16)
    found = reusable_checkpoint(copy, same)
    assert found is not None and found[0].parent == copy / "train" and found[1]["reused"] is True
    assert found[1]["steps"] == report["train"]["steps"]
    for changed in ({"train_epochs": 2}, {"train_images": 72}, {"train_threads": 2}, {"train_seed": 1}):
        assert reusable_checkpoint(copy, replace(same, **changed)) is None, changed
    assert reusable_checkpoint(copy, replace(same, eval_images=17)) is None
    with found[0].open("ab") as f:  # a checkpoint changed since (or a half-written one) is never reused
        f.write(b"x")
    assert reusable_checkpoint(copy, same) is None
    assert reusable_checkpoint(tmp_path / "empty", same) is None
