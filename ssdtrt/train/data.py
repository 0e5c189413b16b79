"""The training batches: augmentation strength and a loader whose order is a function of (seed, epoch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ssdtrt.train.config import TrainConfig
    from ssdtrt.train.distributed import DistContext


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


def make_train_loader(cfg: TrainConfig, dataset: Any, transform: Any, ctx: DistContext) -> tuple[Any, Any]:
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


def start_epoch(loader: Any, sampler: Any, seed: int, epoch: int) -> None:
    """Seed the epoch's shuffle order and augmentation: a resumed run sees the same batches as an uninterrupted one."""
    if sampler is not None:
        sampler.set_epoch(epoch)
    else:  # shuffle order is a function of (seed, epoch)
        loader.generator.manual_seed(seed * 1_000_003 + epoch)
    loader.dataset.set_epoch(epoch)  # per-epoch augmentation seeds
