"""Two `ssdtrt detect` processes writing to the same --out at once: detections.json is always one run's whole file
(atomic temp + rename per writer; the last rename wins), never an interleaving or a torn JSON: the file found is
exactly the records that run writes alone.

The runs provably overlap: each run's last input is a named pipe (FIFO). `detect` writes detections.json only after
its last image, and opening a FIFO for reading blocks until a writer opens it, so a run that has opened its pipe is
alive and has not written anything yet. The test opens the write end of both pipes (a non-blocking open succeeds
only while a reader holds the pipe) and feeds the images only once both runs are waiting at the same time: their
intervals intersect by construction, then both finish and race for the one destination.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.integration  # two `ssdtrt detect` processes at once

if not hasattr(os, "mkfifo"):
    pytest.skip("the overlap gate needs named pipes (os.mkfifo): not available on this OS", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3  # pairs held at the gate together (bounded)
GATE_TIMEOUT_S = 240.0  # both runs must reach their pipe within this (model load + earlier images)


def inputs(folder: Path, prefix: str, count: int) -> tuple[list[str], bytes]:
    """`count - 1` PNG files and the encoded bytes of the last image (fed through the pipe; same name later)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(prefix) + count)
    paths, last = [], b""
    for i in range(count):
        path = folder / f"{prefix}{i}.png"
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        ok, encoded = cv2.imencode(".png", cv2.resize(small, (96, 96), interpolation=cv2.INTER_LINEAR))
        assert ok
        if i < count - 1:
            path.write_bytes(encoded.tobytes())
        else:
            last = encoded.tobytes()
        paths.append(str(path))
    return paths, last


def open_writer_when_read(fifo: Path, proc: subprocess.Popen[str], deadline: float) -> int:
    """The write end of `fifo`, opened once `proc` holds its read end (ENXIO means no reader yet)."""
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno != errno.ENXIO:
                raise
        else:
            os.set_blocking(fd, True)
            return fd
        if proc.poll() is not None:
            _, err_text = proc.communicate()
            pytest.fail(f"detect exited ({proc.returncode}) before reading {fifo.name}: {err_text}")
        if time.monotonic() > deadline:
            pytest.fail(f"detect did not open {fifo.name} within {GATE_TIMEOUT_S:.0f} s")
        time.sleep(0.02)


def test_concurrent_detect_runs_leave_one_whole_detections_json(small_raw_onnx: Path, tmp_path: Path) -> None:
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath}
    runs = {"a": inputs(tmp_path / "a", "a", 3), "b": inputs(tmp_path / "b", "b", 5)}
    winners = []
    for round_ in range(ROUNDS):
        out = tmp_path / f"out{round_}"
        gates = {name: Path(files[-1]) for name, (files, _) in runs.items()}
        for fifo in gates.values():
            fifo.unlink(missing_ok=True)
            os.mkfifo(fifo)
        procs = {name: subprocess.Popen(
            [sys.executable, "-m", "ssdtrt.cli.app", "detect", str(small_raw_onnx), *files, "--out", str(out),
             "--score-threshold", "0.05"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name, (files, _) in runs.items()}
        try:
            deadline = time.monotonic() + GATE_TIMEOUT_S
            writers = {name: open_writer_when_read(gates[name], procs[name], deadline) for name in runs}
            # both runs are now blocked reading their last input at once: neither has written detections.json
            assert all(proc.poll() is None for proc in procs.values())
            assert not (out / "detections.json").exists()
            for name, fd in writers.items():
                os.write(fd, runs[name][1])
            for fd in writers.values():
                os.close(fd)  # EOF: both runs finish now, racing for detections.json
            for proc in procs.values():
                _, err = proc.communicate(timeout=300)
                assert proc.returncode == 0 and "Traceback" not in err, err
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        records = json.loads((out / "detections.json").read_text())  # parses: never torn
        names = {Path(r["file_name"]).stem[0] for r in records}
        assert len(names) == 1, f"records from both runs in one file: {sorted(names)}"
        winner = names.pop()
        winners.append((winner, records))
        assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temp files left behind"
    print(f"winners per round: {[w for w, _ in winners]}")
    for files, last in runs.values():  # the same paths as regular files for the runs alone
        Path(files[-1]).unlink()
        Path(files[-1]).write_bytes(last)
    for name in {w for w, _ in winners}:  # the winner's file is exactly what that run writes alone
        solo = tmp_path / f"solo_{name}"
        subprocess.run([sys.executable, "-m", "ssdtrt.cli.app", "detect", str(small_raw_onnx), *runs[name][0],
                        "--out", str(solo), "--score-threshold", "0.05", "--no-images"], env=env, cwd=ROOT, check=True,
                       capture_output=True, timeout=300)
        expected = json.loads((solo / "detections.json").read_text())
        assert expected and all(records == expected for w, records in winners if w == name)
