"""Validation during training: mAP of the model after each epoch (rank 0 only), recorded in the run's history."""

from __future__ import annotations

import time
from typing import Any

from ssdtrt.train.state import TrainRun


def evaluate_model(run: TrainRun) -> None:
    """Score the model on the val set (first `eval_limit` images); sets run.metrics and run.eval_s."""
    from ssdtrt.evaluate import evaluate, torch_predict_fn

    cfg = run.cfg
    t0 = time.perf_counter()
    fn = torch_predict_fn(run.model, run.device, batch_size=cfg.eval_batch_size)
    res = evaluate(fn, run.val_ds, batch_size=cfg.eval_batch_size, limit=cfg.eval_limit)
    run.metrics, run.eval_s = res.to_dict(), time.perf_counter() - t0
    run.evaluated_at_step = run.step


def record_eval(run: TrainRun, epoch: int) -> dict[str, Any]:
    """Append the last evaluation to the history and report it; returns the history entry."""
    assert run.metrics is not None
    entry = {"epoch": epoch, "step": run.step, "elapsed_s": round(float(run.counters["elapsed_s"]), 2),
             "map": run.metrics["map"], "map50": run.metrics["map50"], "eval_s": round(run.eval_s, 2)}
    run.history.append(entry)
    run.report("eval", {**entry, "metrics": run.metrics})
    return entry
