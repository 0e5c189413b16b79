"""Two `ssdtrt detect` processes writing to the same --out at once: detections.json is always one run's whole file
(atomic temp + rename per writer; the last rename wins), never an interleaving or a torn JSON: the file found is
exactly the records that run writes alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 3  # pairs started together (bounded)


def inputs(folder: Path, prefix: str, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(prefix) + count)
    paths = []
    for i in range(count):
        path = folder / f"{prefix}{i}.png"
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        cv2.imwrite(str(path), cv2.resize(small, (96, 96), interpolation=cv2.INTER_LINEAR))
        paths.append(str(path))
    return paths


def test_concurrent_detect_runs_leave_one_whole_detections_json(small_raw_onnx: Path, tmp_path: Path) -> None:
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath}
    runs = {"a": inputs(tmp_path / "a", "a", 3), "b": inputs(tmp_path / "b", "b", 5)}
    winners = []
    for round_ in range(ROUNDS):
        out = tmp_path / f"out{round_}"
        procs = {name: subprocess.Popen(
            [sys.executable, "-m", "ssdtrt.cli.app", "detect", str(small_raw_onnx), *files, "--out", str(out),
             "--score-threshold", "0.05"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name, files in runs.items()}
        for name, proc in procs.items():
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0 and "Traceback" not in err, err
        records = json.loads((out / "detections.json").read_text())  # parses: never torn
        names = {Path(r["file_name"]).stem[0] for r in records}
        assert len(names) == 1, f"records from both runs in one file: {sorted(names)}"
        winner = names.pop()
        winners.append((winner, records))
        assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temp files left behind"
    print(f"winners per round: {[w for w, _ in winners]}")
    for name in {w for w, _ in winners}:  # the winner's file is exactly what that run writes alone
        solo = tmp_path / f"solo_{name}"
        subprocess.run([sys.executable, "-m", "ssdtrt.cli.app", "detect", str(small_raw_onnx), *runs[name], "--out",
                        str(solo), "--score-threshold", "0.05", "--no-images"], env=env, cwd=ROOT, check=True,
                       capture_output=True, timeout=300)
        expected = json.loads((solo / "detections.json").read_text())
        assert expected and all(records == expected for w, records in winners if w == name)
