"""Training: a seconds-long run on a tiny synthetic subset, checkpoints, resume, and a 2-process gloo DDP run."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch

from ssdtrt.train.loop import TrainConfig, lr_at, train

TINY = dict(preset="ssd-small", data="synthetic", train_size=32, batch_size=8, eval_limit=8, augment="light",
            workers=0, threads=1, lr=5e-3)


class _Recorder:
    def __init__(self, stop_after_epoch: int | None = None) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.stop_after_epoch = stop_after_epoch

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        self.events.append((event, info))
        if event == "checkpoint" and info["epoch"] == self.stop_after_epoch:
            raise KeyboardInterrupt  # simulate a killed run right after an epoch's checkpoint

    def losses(self) -> list[float]:
        return [i["loss"] for e, i in self.events if e == "step"]


def test_lr_schedule_warmup_then_cosine() -> None:
    assert lr_at(0.0, 0, 1.0, 10, 0.01) == pytest.approx(0.1)
    assert lr_at(0.0, 10, 1.0, 10, 0.01) == pytest.approx(1.0)
    assert lr_at(0.5, 100, 1.0, 10, 0.01) == pytest.approx(0.505)
    assert lr_at(1.0, 100, 1.0, 10, 0.01) == pytest.approx(0.01)


@pytest.mark.slow
def test_short_training_lowers_loss_and_writes_loadable_checkpoints(tmp_path: Path) -> None:
    from ssdtrt.model.checkpoint import load_checkpoint, load_model

    rec = _Recorder()
    res = train(TrainConfig(out_dir=str(tmp_path), epochs=3, **TINY), rec)  # 12 steps
    losses = rec.losses()
    assert len(losses) == 12 and res.steps == 12 and res.epochs_completed == 3
    assert sum(losses[-3:]) / 3 < 0.75 * sum(losses[:3]) / 3, losses
    assert [e for e, _ in rec.events].count("eval") == 3
    model = load_model(res.last_path)
    assert model.preset == "ssd-small" and model.num_classes == 7 and not model.training
    ckpt = load_checkpoint(res.last_path)
    assert ckpt["epoch"] == 3 and ckpt["optimizer"] is not None
    assert ckpt["extra"]["scheduler"]["step"] == 12 and set(ckpt["metrics"]) >= {"map", "map50", "per_class"}
    assert res.best_path is not None and res.best_path.exists()
    assert (tmp_path / "metrics.json").exists()
    # the trained weights are what was saved
    for k, v in res.model.state_dict().items():
        assert torch.equal(v.cpu(), model.state_dict()[k]), k


@pytest.mark.slow
def test_resume_continues_from_the_saved_epoch(tmp_path: Path) -> None:
    full = train(TrainConfig(out_dir=str(tmp_path / "full"), epochs=2, **TINY))
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(out_dir=str(tmp_path / "cut"), epochs=2, **TINY), _Recorder(stop_after_epoch=1))
    rec = _Recorder()
    resumed = train(TrainConfig(out_dir=str(tmp_path / "cut"), epochs=2, resume=True, **TINY), rec)
    resume_info = next(i for e, i in rec.events if e == "resume")
    assert resume_info["epochs_completed"] == 1 and resume_info["step"] == 4
    assert [i["step"] for e, i in rec.events if e == "step"] == [5, 6, 7, 8]
    assert resumed.epochs_completed == 2 and resumed.steps == 8
    # same batches, same LR schedule, same optimizer state: the resumed run ends where the uninterrupted one did
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=k)


def test_resume_rejects_another_preset(tmp_path: Path) -> None:
    from ssdtrt.core.errors import CheckpointError

    train(TrainConfig(out_dir=str(tmp_path), epochs=1, **{**TINY, "train_size": 8}))
    cfg = TrainConfig(out_dir=str(tmp_path), epochs=1, resume=True, **{**TINY, "preset": "ssd300-vgg16"})
    with pytest.raises(CheckpointError, match="ssd-small"):
        train(cfg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
    )
    cfg = TrainConfig(out_dir=out_dir, epochs=1, **{**TINY, "batch_size": 4, "eval_limit": 4})
    res = train(cfg)
    params = {k: p.detach().clone() for k, p in res.model.named_parameters()}
    torch.save({"params": params, "steps": res.steps}, Path(out_dir) / f"rank{rank}.pt")


@pytest.mark.slow
def test_ddp_two_cpu_processes_keep_replicas_equal(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    from ssdtrt.model.ssd import build_model

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["steps"] == r1["steps"] == 4  # 32 images / 2 ranks / batch 4
    for k, p in r0["params"].items():
        assert torch.equal(p, r1["params"][k]), k  # bit for bit
    init = dict(build_model("ssd-small", class_names=["a"] * 6).named_parameters())
    assert any(not torch.equal(p, init[k].detach()) for k, p in r0["params"].items() if "conf" in k)
    assert (tmp_path / "last.pt").exists() and not (tmp_path / "rank1").exists()


def _cli(*args: str) -> int:
    from ssdtrt.cli.app import main

    return main(list(args))


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip")
    cases = [
        (["train", "--preset", "nope", "--data", "synthetic", "--out", str(tmp_path / "o"), "--epochs", "1"], "nope"),
        (["train", "--preset", "ssd-small", "--data", f"voc:{tmp_path / 'missing'}", "--out", str(tmp_path / "o"),
          "--epochs", "1"], "missing"),
        (["train", "--preset", "ssd-small", "--out", str(tmp_path / "o")], "--epochs"),
        (["eval", str(bad), "--data", "synthetic"], "bad.pt"),
        (["eval", str(tmp_path / "absent.pt"), "--data", "synthetic"], "absent.pt"),
    ]
    for argv, needle in cases:
        code = _cli(*argv)
        err = capsys.readouterr().err.strip()
        assert code != 0, argv
        assert "Traceback" not in err and len(err.splitlines()) == 1 and needle in err, (argv, err)


@pytest.mark.slow
def test_cli_train_then_eval_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    out = tmp_path / "run"
    code = _cli("train", "--preset", "ssd-small", "--data", "synthetic", "--out", str(out), "--epochs", "1",
                "--train-size", "16", "--batch-size", "8", "--eval-limit", "4", "--workers", "0")
    assert code == 0 and (out / "last.pt").exists()
    js = tmp_path / "m.json"
    code = _cli("eval", str(out / "last.pt"), "--data", "synthetic", "--limit", "4", "--json", str(js))
    text = capsys.readouterr().out
    assert code == 0 and "AP VOC07" in text and "circle" in text
    d = json.loads(js.read_text())
    assert set(d) == {"map", "map50", "per_class"} and set(d["per_class"]) == {
        "circle", "square", "triangle", "star", "cross", "ring"}
