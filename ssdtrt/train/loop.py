"""Training loop: SGD/AdamW with warmup + cosine LR, atomic checkpoints, resume, val mAP, AMP on CUDA, torchrun DDP.

The LR schedule is a function of *progress* in [0, 1]: steps / total steps for `epochs`, elapsed / budget for
`max_minutes` (the larger of the two when both are set), so a time-budgeted run still anneals to the end.
Reproducible runs use `epochs` with fixed `threads` (and `guard_minutes` only as a safety stop): on CPU the same
config then gives the same weights bit for bit, quiet machine or loaded, and a run killed at any point and resumed
from its last epoch checkpoint (`resume`) ends with the same weights as an uninterrupted one (tests/test_reliability_train.py).
Under DDP the elapsed time is all-reduced (max) every step: every replica sees the same LR and stops at the same
step, and only rank 0 evaluates, writes and reports. Library code: progress goes to `reporter(event, info)`.

Files in `out_dir`: `last.pt` (every epoch and at the end: model, optimizer, epoch, preset, class names, metrics,
extra = {scheduler state, GradScaler state, config, history}), `best.pt` (best val mAP@[.5:.95]), `metrics.json`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssdtrt.core.errors import CheckpointError, ClassCountMismatchError, SSDTRTError

if TYPE_CHECKING:
    import torch

Reporter = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Recipe:
    """Per-preset defaults (measured on the synthetic set for ssd-small; seed-style SGD for the SSD300 presets)."""

    optimizer: str = "sgd"
    lr: float = 2.6e-3
    batch_size: int = 32
    weight_decay: float = 5e-4
    warmup_steps: int = 300
    min_lr_ratio: float = 0.01
    augment: str = "ssd"


#: ssd-small, measured on synthetic (2000 train images, mAP@.5 on 100 val images after 8000 images seen, 1 thread):
#: SGD 0.05 bs32 + SSD aug: 0.04 (after 7800); AdamW bs16 lr 2e-3: 0.43, 5e-3: 0.61, 1e-2 + flip: 0.69, 2e-2: 0.59;
#: AdamW bs8 lr 7e-3 + flip: 0.875. Small batches = more updates per CPU-second; few epochs need little augmentation.
RECIPES: dict[str, Recipe] = {
    "ssd-small": Recipe(optimizer="adamw", lr=7e-3, batch_size=8, weight_decay=5e-4, warmup_steps=100, augment="light"),
}


@dataclass
class TrainConfig:
    """One training run. None fields take the preset's Recipe defaults (see `resolved`)."""

    preset: str
    data: str
    out_dir: str
    epochs: int | None = None
    max_minutes: float | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    weight_decay: float | None = None
    warmup_steps: int | None = None
    min_lr_ratio: float | None = None
    augment: str | None = None
    resume: bool = False
    device: str = "cpu"
    workers: int = 0
    seed: int = 0
    eval_limit: int | None = 200
    eval_batch_size: int = 32
    train_size: int | None = None
    amp: bool = True
    threads: int | None = None  # torch intra-op threads on CPU; None = auto_threads() (load-dependent: not reproducible)
    #: wall-clock safety stop that does not shape the LR schedule (unlike max_minutes): past it the run stops after
    #: the current step, evaluates and saves, and TrainResult.stopped_by_guard is True (the schedule did not finish)
    guard_minutes: float | None = None

    def resolved(self) -> TrainConfig:
        recipe = RECIPES.get(self.preset, Recipe())
        filled = {k: getattr(recipe, k) for k in asdict(recipe) if getattr(self, k) is None}
        cfg = replace(self, **filled)
        if cfg.epochs is None and cfg.max_minutes is None:
            raise SSDTRTError("train: give --epochs N or --max-minutes M (or both)")
        if cfg.optimizer not in ("sgd", "adamw"):
            raise SSDTRTError(f"train: optimizer must be sgd or adamw, not {cfg.optimizer!r}")
        if cfg.augment not in ("ssd", "light", "none"):
            raise SSDTRTError(f"train: augment must be ssd, light or none, not {cfg.augment!r}")
        return cfg


@dataclass
class TrainResult:
    out_dir: Path
    last_path: Path
    best_path: Path | None
    metrics: dict[str, Any]
    epochs_completed: int
    steps: int
    elapsed_s: float
    history: list[dict[str, Any]] = field(default_factory=list)
    model: Any = None  # the trained SSD (unwrapped), in train mode, on its device
    stopped_by_guard: bool = False  # guard_minutes ran out before the schedule finished


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str) -> DistContext:
    """Join the process group when launched by torchrun (env RANK / WORLD_SIZE): gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    import torch.distributed as dist

    ctx = DistContext(
        rank=int(os.environ["RANK"]),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
    )
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return ctx


def lr_at(progress: float, step: int, base_lr: float, warmup_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup from 10 % over `warmup_steps`, then cosine from `base_lr` to `base_lr * min_lr_ratio`."""
    warm = min(1.0, 0.1 + 0.9 * step / warmup_steps) if warmup_steps > 0 else 1.0
    p = min(max(progress, 0.0), 1.0)
    cosine = min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
    return base_lr * warm * cosine


def auto_threads(local_world_size: int = 1, workers: int = 0) -> int:
    """Intra-op threads for one process: its share of the cores, minus one per loader worker, and no more than
    the cores other processes leave idle (1-min load average) — OpenMP threads that get descheduled on a busy
    machine make every op wait (measured here: 2 threads on 2 loaded cores ran a step 4x slower than 1 thread)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    share = cores // max(1, local_world_size) - (1 if workers > 0 else 0)
    try:
        idle = cores - os.getloadavg()[0]
    except OSError:  # pragma: no cover
        idle = float(cores)
    return max(1, min(share, int(round(idle))))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and norm scales (1-D tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    import torch

    groups = _param_groups(model, float(cfg.weight_decay))  # type: ignore[arg-type]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=float(cfg.lr))  # type: ignore[arg-type]
    return torch.optim.SGD(groups, lr=float(cfg.lr), momentum=0.9, nesterov=True)  # type: ignore[arg-type]


def train_transform(spec: Any, augment: str) -> Any:
    """Augmentation strength: 'ssd' = the full SSD pipeline (photometric, expand, min-IoU crop, flip); 'light' =
    horizontal flip only (cheap: for short runs of a few epochs, where the geometric ops cost more CPU than they
    return); 'none' = resize only."""
    from ssdtrt.data.transforms import EvalTransform, TrainTransform

    if augment == "none":
        return EvalTransform(spec.preprocess)
    if augment == "light":
        return TrainTransform(spec.preprocess, photometric=False, expand_prob=0.0, crop_min_ious=None)
    return TrainTransform(spec.preprocess)


def _make_loader(cfg: TrainConfig, dataset: Any, transform: Any, ctx: DistContext, spec: Any) -> tuple[Any, Any]:
    """(DataLoader, DistributedSampler or None) yielding (images [N,3,H,W], boxes list, labels list)."""
    from ssdtrt.data.loader import make_loader

    sampler = None
    if ctx.enabled:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed)
    loader = make_loader(
        dataset,
        transform,
        batch_size=int(cfg.batch_size),  # type: ignore[arg-type]
        shuffle=sampler is None,
        num_workers=cfg.workers,
        sampler=sampler,
        seed=cfg.seed,
        drop_last=True,
    )
    return loader, sampler


def _eval(model: Any, val_ds: Any, cfg: TrainConfig, device: Any) -> tuple[dict[str, Any], float]:
    from ssdtrt.evaluate import evaluate, model_detector

    t0 = time.perf_counter()
    with model_detector(model, device, batch_size=cfg.eval_batch_size) as det:
        res = evaluate(det.detect, val_ds, batch_size=cfg.eval_batch_size, limit=cfg.eval_limit)
    return res.to_dict(), time.perf_counter() - t0


def _save(path: Path, model: Any, opt: Any, epoch: int, metrics: dict[str, Any] | None, extra: dict[str, Any]) -> None:
    from ssdtrt.model.checkpoint import save_checkpoint

    save_checkpoint(path, model, optimizer=opt, epoch=epoch, metrics=metrics, extra=extra)


def _load_resume(cfg: TrainConfig, last: Path, class_names: tuple[str, ...]) -> dict[str, Any]:
    from ssdtrt.model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(last)
    if ckpt.get("preset") != cfg.preset:
        raise CheckpointError(f"{last}: was trained with preset {ckpt.get('preset')!r}, not {cfg.preset!r}")
    if tuple(ckpt["class_names"]) != tuple(class_names):
        raise ClassCountMismatchError(
            f"{last}: classes {list(ckpt['class_names'])} differ from the dataset's {list(class_names)}"
        )
    return ckpt


def train(config: TrainConfig, reporter: Reporter | None = None) -> TrainResult:
    """Train per `config`; returns the final metrics and checkpoint paths. Raises SSDTRTError subclasses."""
    import torch

    cfg = config.resolved()
    ctx = init_distributed(cfg.device)
    try:
        return _train(cfg, ctx, reporter if ctx.is_main else None, torch)
    finally:
        if ctx.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _train(cfg: TrainConfig, ctx: DistContext, reporter: Reporter | None, torch: Any) -> TrainResult:  # noqa: C901
    from ssdtrt.core.config import get_preset
    from ssdtrt.data import open_dataset
    from ssdtrt.model.checkpoint import model_from_checkpoint
    from ssdtrt.model.loss import MultiBoxLoss
    from ssdtrt.model.ssd import build_model
    from ssdtrt.core.priors import default_boxes

    report = reporter or (lambda event, info: None)
    spec = get_preset(cfg.preset)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        from ssdtrt.core.errors import BackendUnavailableError

        raise BackendUnavailableError("train: --device cuda but no CUDA device is available")
    device = torch.device(f"cuda:{ctx.local_rank}" if cfg.device.startswith("cuda") and ctx.enabled else cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(cfg.threads or auto_threads(ctx.local_world_size, cfg.workers))
    torch.manual_seed(cfg.seed)
    out_dir = Path(cfg.out_dir)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"

    train_ds = open_dataset(cfg.data, "train", size=cfg.train_size)
    val_ds = open_dataset(cfg.data, "val")
    class_names = tuple(train_ds.class_names)

    ckpt = _load_resume(cfg, last_path, class_names) if cfg.resume else None
    if ckpt is not None:
        model = model_from_checkpoint(ckpt, source=last_path)
    else:
        model = build_model(spec, class_names=class_names)
    model.category_ids = getattr(train_ds, "category_ids", None)  # COCO ids per label, kept by checkpoint and export
    model.to(device)
    criterion = MultiBoxLoss(default_boxes(spec), spec.variances).to(device)
    opt = _make_optimizer(cfg, model)
    use_amp = bool(cfg.amp and device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    sched = {"step": 0, "elapsed_s": 0.0, "epochs_completed": 0, "best_map": -1.0}
    history: list[dict[str, Any]] = []
    metrics: dict[str, Any] | None = None
    if ckpt is not None:
        extra = ckpt.get("extra") or {}
        if ckpt.get("optimizer"):
            opt.load_state_dict(ckpt["optimizer"])
        sched.update(extra.get("scheduler", {}))
        if use_amp and extra.get("scaler"):
            scaler.load_state_dict(extra["scaler"])
        history = list(extra.get("history", []))
        metrics = ckpt.get("metrics")
        report("resume", {"path": str(last_path), **sched})

    train_model: Any = model
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    loader, sampler = _make_loader(cfg, train_ds, train_transform(spec, str(cfg.augment)), ctx, spec)
    steps_per_epoch = len(loader)
    total_steps = cfg.epochs * steps_per_epoch if cfg.epochs is not None else None
    budget_s = cfg.max_minutes * 60.0 if cfg.max_minutes is not None else None
    guard_s = cfg.guard_minutes * 60.0 if cfg.guard_minutes is not None else None
    guarded = False
    max_epochs = cfg.epochs if cfg.epochs is not None else 1 << 30

    def extra_state() -> dict[str, Any]:
        return {
            "scheduler": dict(sched),
            "scaler": scaler.state_dict() if use_amp else None,
            "config": asdict(cfg),
            "history": history,
        }

    def progress_of(step: int, elapsed: float) -> float:
        parts = [step / total_steps if total_steps else 0.0, elapsed / budget_s if budget_s else 0.0]
        return max(parts)

    report(
        "start",
        {
            "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps,
            "budget_s": budget_s,
            "train_images": len(train_ds),
            "val_images": len(val_ds) if cfg.eval_limit is None else min(len(val_ds), cfg.eval_limit),
            "world_size": ctx.world_size,
            "device": str(device),
            "config": asdict(cfg),
            **sched,
        },
    )
    eval_s = 0.0  # last evaluation time: reserved at the end of a time budget
    run_start = time.perf_counter() - float(sched["elapsed_s"])
    stop = progress_of(int(sched["step"]), float(sched["elapsed_s"])) >= 1.0
    evaluated_at_step = int(sched["step"]) if metrics is not None else -1
    epoch = int(sched["epochs_completed"])
    while not stop and epoch < max_epochs:
        if sampler is not None:
            sampler.set_epoch(epoch)
        else:  # shuffle order is a function of (seed, epoch): a resumed run sees the same batches
            loader.generator.manual_seed(cfg.seed * 1_000_003 + epoch)
        loader.dataset.set_epoch(epoch)  # per-epoch augmentation seeds
        train_model.train()
        epoch_done = True
        for images, boxes, labels in loader:
            t_step = time.perf_counter()
            step = int(sched["step"])
            lr = lr_at(progress_of(step, time.perf_counter() - run_start), step, float(cfg.lr), int(cfg.warmup_steps),
                       float(cfg.min_lr_ratio))
            for group in opt.param_groups:
                group["lr"] = lr
            images = images.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                locs, logits = train_model(images)
            out = criterion(locs, logits, list(boxes), list(labels))
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise SSDTRTError(f"train: loss became {loss.item()} at step {step} (lr {lr:.3g}); try a lower --lr")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched["step"] = step + 1
            elapsed = time.perf_counter() - run_start
            if ctx.enabled:  # identical elapsed time (hence LR and stop decision) on every replica
                import torch.distributed as dist

                t = torch.tensor([elapsed], dtype=torch.float64, device=device)
                dist.all_reduce(t, op=dist.ReduceOp.MAX)
                elapsed = float(t.item())
            sched["elapsed_s"] = elapsed
            report(
                "step",
                {
                    "step": step + 1,
                    "epoch": epoch,
                    "loss": float(loss.detach()),
                    "loc_loss": float(out["loc_loss"].detach()),
                    "conf_loss": float(out["conf_loss"].detach()),
                    "lr": lr,
                    "images_per_s": images.shape[0] * ctx.world_size / max(time.perf_counter() - t_step, 1e-9),
                    "progress": progress_of(step + 1, elapsed),
                },
            )
            if budget_s is not None and elapsed + eval_s >= budget_s:
                stop, epoch_done = True, False
                break
            if guard_s is not None and elapsed >= guard_s and (total_steps is None or sched["step"] < total_steps):
                stop, epoch_done, guarded = True, False, True
                break
        if epoch_done:
            epoch += 1
            sched["epochs_completed"] = epoch
        if total_steps is not None and int(sched["step"]) >= total_steps:
            stop = True
        # evaluate + save on rank 0; the others wait at the barrier
        if ctx.is_main:
            metrics, eval_s = _eval(model, val_ds, cfg, device)
            evaluated_at_step = int(sched["step"])
            entry = {"epoch": epoch, "step": int(sched["step"]), "elapsed_s": round(float(sched["elapsed_s"]), 2),
                     "map": metrics["map"], "map50": metrics["map50"], "eval_s": round(eval_s, 2)}
            history.append(entry)
            report("eval", {**entry, "metrics": metrics})
            if metrics["map"] > float(sched["best_map"]):
                sched["best_map"] = float(metrics["map"])
                _save(best_path, model, opt, epoch, metrics, extra_state())
            _save(last_path, model, opt, epoch, metrics, extra_state())
            report("checkpoint", {"path": str(last_path), "epoch": epoch})
        if ctx.enabled:
            import torch.distributed as dist

            t = torch.tensor([eval_s], dtype=torch.float64, device=device)
            dist.broadcast(t, src=0)  # also a barrier: everyone waits for rank 0's eval + save
            eval_s = float(t.item())
    if ctx.is_main and (metrics is None or evaluated_at_step != int(sched["step"])):
        metrics, eval_s = _eval(model, val_ds, cfg, device)
        _save(last_path, model, opt, int(sched["epochs_completed"]), metrics, extra_state())
    if ctx.is_main:
        from ssdtrt.io.files import atomic_write_json

        final = {
            "map": metrics["map"] if metrics else 0.0,
            "map50": metrics["map50"] if metrics else 0.0,
            "per_class": metrics["per_class"] if metrics else {},
            "epochs_completed": int(sched["epochs_completed"]),
            "steps": int(sched["step"]),
            "train_elapsed_s": round(float(sched["elapsed_s"]), 2),
            "stopped_by_guard": guarded,
            "history": history,
        }
        atomic_write_json(out_dir / "metrics.json", final)
        report("done", final)
    return TrainResult(
        out_dir=out_dir,
        last_path=last_path,
        best_path=best_path if best_path.exists() else None,
        metrics=metrics or {},
        epochs_completed=int(sched["epochs_completed"]),
        steps=int(sched["step"]),
        elapsed_s=float(sched["elapsed_s"]),
        history=history,
        model=model,
        stopped_by_guard=guarded,
    )
