"""SIGKILL during `ssdtrt export` and `ssdtrt build-engine --backend openvino`: the destination holds the previous
complete pair, no pair (no manifest: nothing opens), or the new complete pair; never a manifest beside a file it does
not describe (the recorded sha256 makes a mix detectable, and the checks below use it).

Two kinds of kill, both of real CLI processes: (1) exact — a harness process runs the CLI and SIGKILLs itself just
before its k-th os.replace / os.unlink in the destination folder, k = 1, 2, ... until the run completes; (2) timed —
SIGKILL from outside at 0.9 of the clean run's duration.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ssdtrt.core.errors import ManifestError
from ssdtrt.core.manifest import read_manifest, verify_artifact

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.integration  # SIGKILLed export / build-engine processes

ROOT = Path(__file__).resolve().parents[2]
MAX_STEPS = 12  # bound on exact kill points per command (an export has 4, an OpenVINO build 5)

HARNESS = r"""
import os, signal, sys
kill_at = int(os.environ["SSDTRT_TEST_KILL_AT"])
folder = os.environ["SSDTRT_TEST_KILL_DIR"]
calls = [0]
def wrap(real):
    def inner(*args, **kwargs):
        calls[0] += str(args[0]).startswith(folder)
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return inner
os.replace = wrap(os.replace)
os.unlink = wrap(os.unlink)
from ssdtrt.cli.app import main
main(sys.argv[1:])
"""


def env() -> dict[str, str]:
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": pythonpath, "COLUMNS": "200"}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pair_files(dest: Path) -> list[Path]:
    return [dest, dest.with_suffix(".json")] + ([dest.with_suffix(".bin")] if dest.suffix == ".xml" else [])


def snapshot(dest: Path) -> dict[str, str]:
    return {p.name: sha(p) for p in pair_files(dest) if p.is_file()}


def restore(dest: Path, saved: Path) -> None:
    """The previous pair back at `dest`, and no staging folders: every run starts from the same state."""
    for stage in dest.parent.glob(".*.stage"):
        shutil.rmtree(stage)
    for p in pair_files(dest):
        p.unlink(missing_ok=True)
        if (saved / p.name).is_file():
            shutil.copy2(saved / p.name, p)


def classify(dest: Path, old: dict[str, str], new: dict[str, str]) -> str:
    """'previous' | 'new' | 'none'; fails the test on a mix or a partial file."""
    manifest = dest.with_suffix(".json")
    for p in pair_files(dest):  # every file present is whole: byte-identical to the old or the new one
        if p.is_file() and p.name != manifest.name:
            assert sha(p) in (old.get(p.name), new.get(p.name)), f"{p.name} is neither the old nor the new file"
    if not manifest.is_file():
        with pytest.raises(ManifestError, match="manifest not found"):
            read_manifest(dest)  # nothing opens an artifact without its manifest
        return "none"
    m = read_manifest(dest)
    verify_artifact(m, dest)  # the manifest describes exactly the file(s) beside it (raises on a mix)
    state = snapshot(dest)
    if state == old:
        return "previous"
    assert state == new, f"a manifest with files from two writes: {state}"
    return "new"


def run_exact(args: list[str], kill_at: int, folder: Path) -> int:
    proc = subprocess.run([sys.executable, "-c", HARNESS, *args],
                          env={**env(), "SSDTRT_TEST_KILL_AT": str(kill_at), "SSDTRT_TEST_KILL_DIR": str(folder)},
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode


def run_timed(args: list[str], after_s: float) -> int:
    proc = subprocess.Popen([sys.executable, "-m", "ssdtrt.cli.app", *args], env=env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=after_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    return proc.wait(timeout=60)


def kill_everywhere(args: list[str], dest: Path, tmp_path: Path, *, check_sweep: bool = True) -> dict[str, int]:
    """Run `args` (which writes `dest`) killed at every commit step, then once at a timed point; outcome counts.

    The run that gets past its last step is the clean run: its files are the "new" pair, its duration times the
    timed kill. With `check_sweep`, a run killed at its last step leaves a staging folder, which the next clean
    run must sweep (same `fileio.staging_dir` for every writer: the export test leaves it to the faster OpenVINO one).
    """
    old = snapshot(dest)
    saved = tmp_path / "saved_old"
    saved.mkdir()
    for p in pair_files(dest):
        shutil.copy2(p, saved / p.name)
    states: list[Path] = []
    clean_s = 0.0
    for kill_at in range(1, MAX_STEPS + 1):
        restore(dest, saved)
        t = time.perf_counter()
        code = run_exact(args, kill_at, dest.parent)
        states.append(keep_state(dest, tmp_path / f"state{kill_at}"))
        if code == 0:  # got past its last file-system step: nothing left to kill
            clean_s = time.perf_counter() - t
            break
        assert code == -signal.SIGKILL
    else:
        pytest.fail(f"more than {MAX_STEPS} file-system steps")
    new = snapshot(dest)
    # a different model: its manifest and weights differ (an OpenVINO .xml holds only the topology: it may not)
    assert new.keys() == old.keys() and new[dest.with_suffix(".json").name] != old[dest.with_suffix(".json").name]
    restore(dest, saved)
    run_timed(args, 0.9 * clean_s)
    states.append(keep_state(dest, tmp_path / "timed"))
    if check_sweep:
        assert run_exact(args, kill_at - 1, dest.parent) == -signal.SIGKILL
        assert list(dest.parent.glob(".*.stage")), "a run killed mid-commit leaves its staging folder"
        assert subprocess.run([sys.executable, "-m", "ssdtrt.cli.app", *args], env=env(), cwd=ROOT,
                              capture_output=True, timeout=300).returncode == 0
        assert not list(dest.parent.glob(".*.stage")), "stale staging folders of killed runs are swept by the next write"
    sequence = [classify(state / dest.name, old, new) for state in states]
    print(f"{args[0]}: outcome per kill point, then the timed kill: {sequence}")
    return {name: sequence.count(name) for name in ("previous", "none", "new")}


def keep_state(dest: Path, where: Path) -> Path:
    """Copy what a run left at the destination (the pair's files only) for classification later."""
    where.mkdir()
    for p in pair_files(dest):
        if p.is_file():
            shutil.copy2(p, where / p.name)
    return where


def test_export_killed_at_any_point_leaves_a_whole_pair_or_none(tmp_path: Path, small_checkpoint: Path) -> None:
    from ssdtrt.export.onnx_export import export_checkpoint
    from ssdtrt.model.checkpoint import save_checkpoint
    from ssdtrt.model.ssd import build_model

    torch.manual_seed(1)
    other = save_checkpoint(tmp_path / "other.pt", build_model("ssd-small").eval())
    dest = tmp_path / "out" / "model.onnx"
    export_checkpoint(small_checkpoint, dest)  # the previous pair
    outcomes = kill_everywhere(["export", str(other), "--out", str(dest)], dest, tmp_path, check_sweep=False)
    # exact kills: before the staged manifest's rename and before the unlink (previous); after the unlink and after
    # the artifact rename (none); the run that completes (new); the timed kill lands on one of the three
    assert outcomes["previous"] >= 2 and outcomes["none"] >= 2 and outcomes["new"] >= 1, outcomes


@pytest.mark.openvino
def test_openvino_build_killed_at_any_point_leaves_a_whole_set_or_none(tmp_path: Path, small_raw_onnx: Path) -> None:
    from ssdtrt.engines.openvino_builder import build_openvino
    from ssdtrt.export.onnx_export import export_model
    from ssdtrt.model.ssd import build_model

    torch.manual_seed(1)
    other = export_model(build_model("ssd-small").eval(), tmp_path / "src" / "other.onnx", mode="raw",
                         dynamic_batch=True).onnx_path
    dest = tmp_path / "engines" / "model.xml"
    build_openvino(small_raw_onnx, dest, validate=False)  # the previous set (.xml, .bin, .json)
    args = ["build-engine", str(other), "--backend", "openvino", "--out", str(dest), "--no-validate",
            "--postprocess", "host"]  # one commit (an engine build commits its raw-heads reference first)
    outcomes = kill_everywhere(args, dest, tmp_path)
    # after the unlink, after the .bin rename and after the .xml rename: no manifest, nothing opens
    assert outcomes["previous"] >= 2 and outcomes["none"] >= 3 and outcomes["new"] >= 1, outcomes
