"""The demo's training schedule is reproducible: the same settings give the same checkpoint on a quiet machine and
beside a CPU hog (epochs at fixed threads, not a time budget). Same code path as `make demo`, shortened by settings."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ssdtrt.demo.settings import DemoSettings
from ssdtrt.demo.training import GUARD_WARNING, reusable_checkpoint, train_checkpoint

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.integration  # the demo's training schedule, run twice

#: the demo's schedule (same DemoSettings → same `train_config`), shortened: 2 epochs of 48 images (12 steps)
SHORT = DemoSettings(train_epochs=2, train_images=48, eval_images=8)


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    from ssdtrt.model.checkpoint import load_checkpoint

    return load_checkpoint(ckpt)["model"]


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()  # the demo fixes torch's threads in this process; give them back
    yield
    torch.set_num_threads(threads)


def test_demo_schedule_gives_the_same_checkpoint_quiet_and_beside_a_cpu_hog(tmp_path: Path, keep_threads: None) -> None:
    quiet_ckpt, quiet = train_checkpoint(tmp_path / "quiet", SHORT, None)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # one core kept busy for the whole run
    try:
        loaded_ckpt, loaded = train_checkpoint(tmp_path / "loaded", SHORT, None)
    finally:
        hog.kill()
        hog.wait()
    assert quiet["steps"] == loaded["steps"] == quiet["planned_steps"] == 12
    assert not quiet["stopped_by_guard"] and not loaded["stopped_by_guard"]
    a, b = _weights(quiet_ckpt), _weights(loaded_ckpt)
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"weights differ bit-wise in {differing[:5]}"
    assert quiet["val_map"] == loaded["val_map"] and quiet["val_map50"] == loaded["val_map50"]


def test_guard_stops_with_a_warning_and_the_checkpoint_is_never_reused(tmp_path: Path, keep_threads: None) -> None:
    cfg = replace(SHORT, guard_minutes=1e-5)  # past the guard after the first step
    _, info = train_checkpoint(tmp_path, cfg, None)
    assert info["stopped_by_guard"] and info["steps"] < info["planned_steps"]
    assert reusable_checkpoint(tmp_path, cfg) is None  # a cut-short run is not the demo's result
    text = GUARD_WARNING.format(minutes=cfg.guard_minutes, **info)
    assert "NOT the demo's reproducible result" in text and f"{info['steps']} of 12 steps" in text
