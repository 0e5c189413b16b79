"""`ssdtrt bench throughput`: a short real run writes the documented JSON (results per model, ratio = pipeline ÷ bare)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ssdtrt.cli.app import main


@pytest.mark.integration  # a real timed run of the command
def test_bench_throughput_json_and_plot(small_raw_onnx: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "tp.json", tmp_path / "tp.png"
    args = ["bench", "throughput", str(small_raw_onnx), "--seconds", "0.6", "--warmup", "0.2", "--requests", "2",
            "--json", str(out), "--plot", str(png)]
    assert main(args) == 0
    report = json.loads(out.read_text())
    (r,) = report["results"]
    assert r["backend"] == "onnxruntime" and r["settings"]["requests"] == 2 and 1 <= r["settings"]["batch_size"] <= 8
    assert r["images"] > 0 and r["images_per_second"] > 0 and r["bare_images_per_second"] > 0
    # the ratio is the median of the alternated rounds' ratios, each pipeline ÷ bare of its own round
    assert len(r["rounds"]) == 3
    for rnd in r["rounds"]:
        assert rnd["ratio"] == pytest.approx(rnd["pipeline_images_per_second"] / rnd["bare_images_per_second"])
    assert r["ratio"] == pytest.approx(float(np.median([rnd["ratio"] for rnd in r["rounds"]])))
    assert r["images"] == sum(rnd["pipeline_images"] for rnd in r["rounds"])
    assert r["speedup_vs_sequential"] == pytest.approx(r["images_per_second"] / r["sequential_images_per_second"])
    lat = r["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
    assert r["settings"]["runner"]["performance_mode"] == "throughput"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_throughput_bad_model_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "throughput", str(tmp_path / "missing.onnx"), "--seconds", "0.2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.onnx" in err[0]
