"""What every benchmark report records first: its settings, the machine, and the image sizes it ran on."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class BenchRecord:
    """Base of the latency and throughput reports (their JSON starts with these keys, in this order)."""

    settings: Any  # a dataclass of the bench's settings
    machine: dict[str, Any]
    image_sizes_hw: list[tuple[int, int]]

    def head_dict(self) -> dict[str, Any]:
        return {
            "settings": asdict(self.settings),
            "machine": self.machine,
            "image_sizes_hw": [list(s) for s in self.image_sizes_hw],
        }
