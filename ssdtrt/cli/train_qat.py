"""`ssdtrt train --qat --from CKPT`: the command side of `ssdtrt.train.qat_run` (progress bar and summary)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_qat_cli(checkpoint: Path | None, out: Path, *, data: str, steps: int, calib_method: str, lr: float | None,
                batch_size: int | None, seed: int, threads: int | None, eval_limit: int, train_size: int | None) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ssdtrt.cli.common import console
    from ssdtrt.core.errors import SSDTRTError
    from ssdtrt.export.calibration import CALIB_METHODS
    from ssdtrt.train.qat_run import QatConfig, run_qat

    if checkpoint is None:
        raise SSDTRTError("train --qat needs --from CHECKPOINT")
    if calib_method not in CALIB_METHODS:
        raise SSDTRTError(f"train --qat: --qat-calib must be one of {', '.join(CALIB_METHODS)}")
    cfg = QatConfig(checkpoint, out, data=data, steps=steps, calib_method=calib_method, seed=seed, threads=threads,
                    eval_limit=eval_limit or None, train_size=train_size,
                    **({"lr": lr} if lr is not None else {}), **({"batch_size": batch_size} if batch_size else {}))
    con = console()
    with Progress(TextColumn("[bold]qat"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                  TimeElapsedColumn(), console=con) as bar:
        task = bar.add_task("qat", total=steps, stats="calibrating")

        def report(event: str, info: dict[str, Any]) -> None:
            if event == "plan":
                bar.console.print(f"fake quantization on {info['convs']} convs and {info['residual_blocks']} residual "
                                  f"inputs ({info['bn_folded']} BatchNorms folded)")
            elif event == "start":
                bar.console.print(f"fake-quantized mAP before: {info['fq_map_before']:.4f}")
            elif event == "step":
                bar.update(task, completed=info["step"], stats=f"loss {info['loss']:.3f} lr {info['lr']:.2g}")

        result = run_qat(cfg, report)
    m = result.metrics
    con.print(f"[bold]done[/bold]: {m['steps']} steps in {m['train_s']:.0f} s; mAP fake-quantized "
              f"{m['fq_map_before']:.4f} → {m['fq_map']:.4f}, float {m['float_map']:.4f} → {result.checkpoint}")
    con.print(f"export it: ssdtrt export {result.checkpoint} --precision int8 --calib-data {data} "
              f"--calib-method {calib_method}")
