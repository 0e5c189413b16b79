"""`ssdtrt train` SIGKILLed mid-epoch (and mid-checkpoint) and restarted with `--resume` ends with the same final
weights, bit for bit, as an uninterrupted run with the same seed (CPU, --threads 1). Real processes, small model.

The kill is exact: a harness runs the CLI and SIGKILLs itself at a chosen optimizer step, or just before the n-th
rename onto `last.pt` (after best.pt of that epoch was written).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.integration  # SIGKILLed training processes

ROOT = Path(__file__).resolve().parents[2]
#: 3 epochs x 4 steps of 8 images; the val set is scored on 8 images after each epoch
ARGS = ["train", "--preset", "ssd-small", "--data", "synthetic", "--epochs", "3", "--train-size", "32",
        "--eval-limit", "8", "--threads", "1", "--workers", "0", "--seed", "0"]

HARNESS = r"""
import os, signal, sys
import torch
kill_step = int(os.environ.get("SSDTRT_TEST_KILL_STEP", "0"))
kill_replace = os.environ.get("SSDTRT_TEST_KILL_REPLACE", "")  # "NAME:N": before the N-th rename onto NAME
steps = [0]
real_step = torch.optim.AdamW.step
def step(self, *args, **kwargs):
    steps[0] += 1
    if steps[0] == kill_step:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_step(self, *args, **kwargs)
torch.optim.AdamW.step = step
if kill_replace:
    name, nth = kill_replace.split(":")
    renames = [0]
    real_replace = os.replace
    def replace(src, dst, *args, **kwargs):
        if os.path.basename(str(dst)) == name:
            renames[0] += 1
            if renames[0] == int(nth):
                os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst, *args, **kwargs)
    os.replace = replace
from ssdtrt.cli.app import main
main(sys.argv[1:])
"""


def run(out: Path, *extra: str, harness_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, "COLUMNS": "200", **(harness_env or {})}
    head = [sys.executable, "-c", HARNESS] if harness_env else [sys.executable, "-m", "ssdtrt.cli.app"]
    return subprocess.run([*head, *ARGS, "--out", str(out), *extra], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    from ssdtrt.model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["extra"]["scheduler"]["step"] == 12 and ckpt["epoch"] == 3
    return ckpt["model"]


def test_killed_training_resumes_to_the_same_weights(tmp_path: Path) -> None:
    full = run(tmp_path / "full")
    assert full.returncode == 0, full.stderr
    reference = final_weights(tmp_path / "full")
    kills = {
        "mid-epoch 2 (optimizer step 6 of 12)": {"SSDTRT_TEST_KILL_STEP": "6"},
        "mid-checkpoint (before the 2nd rename onto last.pt)": {"SSDTRT_TEST_KILL_REPLACE": "last.pt:2"},
    }
    for i, (what, harness_env) in enumerate(kills.items()):
        out = tmp_path / f"killed{i}"
        killed = run(out, harness_env=harness_env)
        assert killed.returncode == -signal.SIGKILL, (what, killed.stderr)
        assert (out / "last.pt").is_file(), what  # epoch 1's checkpoint survived the kill
        resumed = run(out, "--resume")
        assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, (what, resumed.stderr)
        weights = final_weights(out)
        differing = [k for k in reference if not torch.equal(reference[k], weights[k])]
        assert not differing, f"{what}: final weights differ in {differing[:5]}"
