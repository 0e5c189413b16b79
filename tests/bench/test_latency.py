"""`ssdtrt bench latency`: variant planning, per-stage measurement, renderings and the CLI (no timed assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ssdtrt.bench.latency import LatencySettings, Stats, bench_models, plan_variants
from ssdtrt.cli.app import main
from ssdtrt.core.errors import ManifestError

TINY = LatencySettings(batch_sizes=(1, 3), warmup=1, iters=4)


def test_stats_match_numpy_percentiles() -> None:
    samples = np.random.default_rng(0).exponential(5.0, size=257)
    s = Stats.of(samples)
    assert s.p50 == pytest.approx(np.median(samples))
    assert s.p90 == pytest.approx(np.percentile(samples, 90))
    assert s.p99 == pytest.approx(np.percentile(samples, 99))
    assert (s.min, s.max, s.mean) == pytest.approx((samples.min(), samples.max(), samples.mean()))
    with pytest.raises(ValueError):
        Stats.of([])


def test_plan_variants_per_artifact_and_filters(small_checkpoint: Path, small_raw_onnx: Path) -> None:
    pairs = {(v.backend, v.precision) for v in plan_variants([small_checkpoint, small_raw_onnx])}
    assert pairs == {("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16")}
    only = plan_variants([small_checkpoint, small_raw_onnx], backends=["ov"], precisions=["f32"], threads=1)
    assert [(v.backend, v.precision, v.options) for v in only] == [("openvino", "fp32", {"num_threads": 1, "precision_hint": "f32"})]
    bf16 = plan_variants([small_checkpoint], precisions=["bf16"])
    assert [v.options.get("autocast_bf16") for v in bf16] == [True]
    with pytest.raises(ManifestError, match="no such file"):
        plan_variants([small_raw_onnx.with_name("missing.onnx")])
    with pytest.raises(ManifestError, match="unknown backend"):
        plan_variants([small_raw_onnx], backends=["tflite"])


@pytest.mark.integration  # timed runs of every stage on two backends
def test_bench_models_measures_every_stage(small_checkpoint: Path, small_raw_onnx: Path) -> None:
    report = bench_models([small_checkpoint, small_raw_onnx], TINY, precisions=["fp32"], backends=["torch", "onnxruntime"])
    assert report.skipped == []
    assert [(r.backend, r.batch_size) for r in report.results] == [("torch", 1), ("torch", 3), ("onnxruntime", 1), ("onnxruntime", 3)]
    for r in report.results:
        assert r.iters == TINY.iters
        assert set(r.stages) == {"preprocess", "inference", "postprocess", "e2e"}  # CPU: no host↔device stages
        for st in r.stages.values():
            assert 0 < st.min <= st.p50 <= st.p90 <= st.p99 <= st.max
        # the stages are inside the end-to-end span of the same iterations
        assert sum(r.stages[s].min for s in ("preprocess", "inference", "postprocess")) <= r.stages["e2e"].max
        assert r.images_per_s == pytest.approx(r.batch_size * 1e3 / r.stages["e2e"].mean)
        assert r.runner["backend"] == r.backend
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["machine"]["cpu_cores"] >= 1 and "numpy" in doc["machine"]["packages"]
    assert doc["settings"]["batch_sizes"] == [1, 3] and doc["image_sizes_hw"] == [[160, 160]] * 3
    assert report.best(1) is not None and report.best(1).batch_size == 1


def test_slow_variants_stop_after_max_seconds(small_raw_onnx: Path) -> None:
    settings = LatencySettings(batch_sizes=(1,), warmup=0, iters=10_000, max_seconds=0.0, min_iters=3)
    report = bench_models([small_raw_onnx], settings, backends=["onnxruntime"])
    assert [r.iters for r in report.results] == [3]


def test_max_seconds_also_cuts_a_long_warmup(small_raw_onnx: Path) -> None:
    settings = LatencySettings(batch_sizes=(1,), warmup=1000, iters=4, max_seconds=0.0, min_iters=2)
    report = bench_models([small_raw_onnx], settings, backends=["onnxruntime"])
    assert [(r.warmup_iters, r.iters) for r in report.results] == [(1, 2)]
    full = bench_models([small_raw_onnx], LatencySettings(warmup=2, iters=3), backends=["onnxruntime"])
    assert [(r.warmup_iters, r.iters) for r in full.results] == [(2, 3)]


def test_images_are_resized_to_the_requested_size(small_raw_onnx: Path) -> None:
    settings = LatencySettings(batch_sizes=(2,), warmup=0, iters=1, image_size_hw=(48, 64))
    report = bench_models([small_raw_onnx], settings, backends=["onnxruntime"])
    assert report.image_sizes_hw == [(48, 64), (48, 64)]


@pytest.mark.openvino
def test_openvino_bf16_request_is_reported_as_compiled(small_raw_onnx: Path) -> None:
    report = bench_models([small_raw_onnx], LatencySettings(warmup=0, iters=2), backends=["openvino"], precisions=["bf16"])
    (r,) = report.results
    compiled = str(r.runner.get("compiled_inference_precision_hint", "")).lower()
    assert compiled, "OpenVINO should report the compiled inference precision"
    assert ("bf16" in compiled) == (not any("compiled f32" in n for n in r.notes))


def test_cli_writes_json_markdown_plot_and_keeps_going_past_a_bad_model(
    small_raw_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lat"
    code = main([
        "bench", "latency", str(tmp_path / "missing.onnx"), str(small_raw_onnx), "--backend", "onnxruntime",
        "--batch-sizes", "1,2", "--warmup", "1", "--iters", "3",
        "--json", f"{out}.json", "--markdown", f"{out}.md", "--plot", f"{out}.png",
    ])
    captured = capsys.readouterr()
    assert code == 1  # the missing model
    assert captured.err.count("missing.onnx") == 1 and "Traceback" not in captured.err
    doc = json.loads(Path(f"{out}.json").read_text())
    assert [r["batch_size"] for r in doc["results"]] == [1, 2]
    md = Path(f"{out}.md").read_text()
    assert "| onnxruntime fp32 · small_raw.onnx | 1 |" in md and "Machine:" in md
    assert Path(f"{out}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "fastest at batch 1" in captured.out


def test_cli_rejects_bad_batch_sizes(small_raw_onnx: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "latency", str(small_raw_onnx), "--batch-sizes", "0,x"]) == 2
    assert "--batch-sizes" in capsys.readouterr().err


@pytest.mark.cuda
def test_torch_cuda_splits_host_device_copies(small_checkpoint: Path) -> None:
    settings = LatencySettings(batch_sizes=(2,), warmup=1, iters=3, device="cuda")
    report = bench_models([small_checkpoint], settings, precisions=["fp32"])
    (r,) = report.results
    assert {"h2d", "inference", "d2h"} <= set(r.stages)
    assert all(r.stages[s].p50 > 0 for s in ("h2d", "inference", "d2h"))
