"""What every demo step shares: the log, progress bars, step timings and the artifacts made so far."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Log = Callable[[str], None]
Advance = Callable[[int], None]
#: (description, total units) -> advance(n): a progress bar for one sub-step (the CLI draws it with rich)
StartTask = Callable[[str, int], Advance]
#: train() events (see ssdtrt.train.config.Reporter)
TrainReporter = Callable[[str, dict[str, Any]], None]


@dataclass
class DemoRun:
    """Running state: timings, artifacts (variant name -> (path, backend)) and the report being filled."""

    log: Log
    start_task: StartTask | None
    steps_s: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, tuple[Path, str | None]] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str, message: str) -> Iterator[None]:
        self.log(f"[{len(self.steps_s) + 1}] {message}")
        t = time.perf_counter()
        try:
            yield
        finally:
            self.steps_s[name] = round(time.perf_counter() - t, 1)
            self.log(f"    {name}: {self.steps_s[name]:.1f} s")

    def task(self, description: str, total: int) -> Advance | None:
        return self.start_task(description, total) if self.start_task is not None else None
