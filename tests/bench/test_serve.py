"""`ssdtrt bench serve MODEL`: starts `ssdtrt serve` on 127.0.0.1 (free ports), drives it through tritonclient with
bounded levels, measures the in-process baseline, writes JSON/markdown/PNG, and leaves no server behind."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("tritonclient.grpc")

from serve_helpers import require_pytriton  # noqa: E402

require_pytriton()

from ssdtrt.cli.app import main  # noqa: E402

pytestmark = pytest.mark.integration  # starts `ssdtrt serve` and drives it over the network


def test_bench_serve_writes_reports_and_stops_its_server(small_raw_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    code = main(["bench", "serve", str(small_raw_onnx), "--concurrency", "1,4", "--max-requests", "16",
                 "--max-seconds", "10", "--images", "4", "--baseline-batch-sizes", "1,4", "--baseline-seconds", "0.5",
                 "--threads", "1", "--interleave", "2", "--interleave-seconds", "1", "--json", f"{out}.json", "--markdown", f"{out}.md", "--plot", f"{out}.png"])
    assert code == 0
    report = json.loads(Path(f"{out}.json").read_text())
    levels = {lv["concurrency"]: lv for lv in report["levels"]}
    assert set(levels) == {1, 4}
    for lv in levels.values():
        assert lv["requests"] == 16 and lv["failed"] == 0 and lv["lost"] == 0  # the request budget bounds a level
        assert 0 < lv["latency_ms"]["p50"] <= lv["latency_ms"]["p99"] <= lv["latency_ms"]["max"]
        assert sum(int(b) * n for b, n in lv["batch_histogram"].items()) == 16  # every request executed once
    assert levels[1]["batch_histogram"] == {"1": 16}
    rows = {(r["threads"], r["batch"]) for r in report["baseline"]}
    assert rows == {("default", 1), ("default", 4), (1, 1), (1, 4)}  # runner defaults and the server's --threads
    assert all(r["detect"] > 0 and r["decode+detect"] > 0 for r in report["baseline"])
    rounds = report["interleaved"]
    assert len(rounds) == 2 and all(r["concurrency"] == 4 and r["served_req_s"] > 0 and r["failed"] == 0 for r in rounds)
    assert all(abs(r["ratio"] - r["served_req_s"] / r["in_process_img_s"]) < 1e-9 for r in rounds)
    assert report["settings"]["target"].startswith("127.0.0.1")
    assert any("failed requests: 0, lost: 0" in line for line in report["summary"])
    md = Path(f"{out}.md").read_text()
    assert "| concurrency |" in md and "In-process `Detector`" in md
    assert Path(f"{out}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    left = subprocess.run(["pgrep", "-f", f"serve {small_raw_onnx}"], capture_output=True, text=True)
    assert left.stdout == "", left.stdout
