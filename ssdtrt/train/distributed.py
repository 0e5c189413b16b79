"""Where a run executes: its torchrun rank (DDP over gloo / nccl), CPU thread count, and the collectives that keep
replicas in lock step (same elapsed time, hence same LR and stop decision, on every rank)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


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


def close_distributed(ctx: DistContext) -> None:
    """Leave the process group `init_distributed` joined (no-op for a single process)."""
    if ctx.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


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


def max_over_ranks(value: float, device: Any) -> float:
    """The largest `value` of all replicas (all-reduce MAX in float64)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def from_main(value: float, device: Any) -> float:
    """Rank 0's `value` on every replica; also a barrier (the others wait for rank 0's eval + save)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())
