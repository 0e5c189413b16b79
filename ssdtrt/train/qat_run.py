"""`ssdtrt train --qat --from CKPT`: fold BN, read the export's Q/DQ plan, fine-tune with fake quantization, save.

A short fixed-step AdamW fine-tune (cosine to 1 % of the learning rate) on the checkpoint's dataset, using the
training package's data and loss (`ssdtrt.data`, `MultiBoxLoss`); BatchNorm statistics stay frozen (folded).
Scored after training with the fake quantization on (what the INT8 export computes) and off.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ssdtrt.core.errors import CheckpointError, SSDTRTError


#: Checkpoint `extra` entry with the activation ranges QAT trained against; `ssdtrt export --precision int8` uses
#: them for those tensors (recalibrating a QAT model moves the thresholds away from what it learned: demo, entropy,
#: fake-quantized 0.738 mAP vs 0.705 exported with recalibrated ranges).
QAT_RANGES_KEY = "qat_ranges"


@dataclass
class QatConfig:
    checkpoint: Path
    out_dir: Path
    data: str = "synthetic"
    steps: int = 300
    lr: float = 2e-4
    batch_size: int = 8
    calib_images: int = 256
    calib_method: str = "percentile"
    seed: int = 0
    threads: int | None = None
    eval_limit: int | None = 200
    train_size: int | None = None


@dataclass
class QatResult:
    checkpoint: Path
    metrics: dict[str, Any] = field(default_factory=dict)


def run_qat(cfg: QatConfig, report: Callable[[str, dict[str, Any]], None] | None = None) -> QatResult:
    """Fine-tune `cfg.checkpoint` with export-placed fake quantization; writes OUT/qat.pt (plain float weights)."""
    import torch

    from ssdtrt.core.priors import default_boxes
    from ssdtrt.data import open_dataset
    from ssdtrt.data.loader import make_loader
    from ssdtrt.data.transforms import TrainTransform
    from ssdtrt.export.calibration import CalibrationConfig
    from ssdtrt.model.checkpoint import load_model, save_checkpoint
    from ssdtrt.model.loss import MultiBoxLoss
    from ssdtrt.train.qat import attach_fake_quant, detach_fake_quant, fold_batchnorm, plan_from_export

    say = report or (lambda _e, _i: None)
    if not Path(cfg.checkpoint).is_file():
        raise CheckpointError(f"{cfg.checkpoint}: no such checkpoint file")
    if cfg.steps < 1:
        raise SSDTRTError(f"train --qat: --qat-steps must be >= 1, got {cfg.steps}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = load_model(cfg.checkpoint, "cpu")
    folded = fold_batchnorm(model)
    calib = CalibrationConfig(cfg.data, cfg.calib_images, cfg.calib_method, cache_dir=Path(cfg.out_dir) / ".calib",
                              high_precision="fp32")
    t0 = time.perf_counter()
    plan, _ = plan_from_export(model, calib)
    say("plan", {"convs": len(plan.conv_input_scales), "residual_blocks": len(plan.block_input_scales)
                 + len(plan.block_output_scales), "bn_folded": folded, "s": time.perf_counter() - t0})
    spec = model.spec
    train_ds, val_ds = open_dataset(cfg.data, "train", size=cfg.train_size), open_dataset(cfg.data, "val")
    transform = TrainTransform(spec.preprocess, photometric=False, expand_prob=0.0, crop_min_ious=None)
    loader = make_loader(train_ds, transform, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed, drop_last=True)
    criterion = MultiBoxLoss(default_boxes(spec), spec.variances)
    handles = attach_fake_quant(model, plan)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    before = _score(model, val_ds, cfg.eval_limit)
    say("start", {"steps": cfg.steps, "fq_map_before": before})
    step, t0 = 0, time.perf_counter()
    while step < cfg.steps:
        for images, boxes, labels in loader:
            model.train()
            _freeze_bn(model)
            lr = cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / cfg.steps)))
            for g in opt.param_groups:
                g["lr"] = lr
            out = criterion(*model(images), list(boxes), list(labels))
            if not torch.isfinite(out["loss"]):
                raise SSDTRTError(f"train --qat: loss became {out['loss'].item()} at step {step}; try a lower --lr")
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            opt.step()
            step += 1
            say("step", {"step": step, "steps": cfg.steps, "loss": float(out["loss"].detach()), "lr": lr})
            if step >= cfg.steps:
                break
    train_s = time.perf_counter() - t0
    fq_map = _score(model, val_ds, cfg.eval_limit)
    detach_fake_quant(model, handles)
    float_map = _score(model, val_ds, cfg.eval_limit)
    metrics = {"fq_map_before": before, "fq_map": fq_map, "float_map": float_map, "train_s": round(train_s, 1),
               "steps": step, "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}}
    say("done", metrics)
    out_path = Path(cfg.out_dir) / "qat.pt"
    ranges = {"method": cfg.calib_method, "absmax": plan.tensor_absmax}
    save_checkpoint(out_path, model, metrics={"map": float_map}, extra={"qat": metrics, QAT_RANGES_KEY: ranges})
    return QatResult(out_path, metrics)


def qat_ranges(checkpoint: Path) -> tuple[tuple[str, float], ...]:
    """(tensor, |range|) pairs a QAT checkpoint trained with, for `CalibrationConfig.fixed_ranges` (the export
    keeps them instead of recalibrating, so its Q/DQ scales are the ones QAT learned with), and their method;
    ((), None) for other checkpoints."""
    from ssdtrt.model.checkpoint import load_checkpoint

    if not Path(checkpoint).is_file():
        return (), None
    ranges = (load_checkpoint(checkpoint).get("extra") or {}).get(QAT_RANGES_KEY)
    if not ranges:
        return (), None
    return tuple(sorted((str(k), float(v)) for k, v in ranges["absmax"].items())), ranges.get("method")


def _freeze_bn(model: Any) -> None:
    """Folded BatchNorms are identities + bias: their statistics must not move (eval mode in training)."""
    from torch import nn

    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()


def _score(model: Any, dataset: Any, limit: int | None) -> float:
    from ssdtrt.evaluate import evaluate, model_detector

    with model_detector(model, "cpu", batch_size=16) as det:
        return round(float(evaluate(det.detect, dataset, limit=limit).map), 5)
