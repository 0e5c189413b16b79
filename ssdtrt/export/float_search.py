"""The fewest layers to return to float: doubling then bisection over k (top-k of a sensitivity ranking)."""

from __future__ import annotations

from collections.abc import Callable

from ssdtrt.core.errors import ExportError


def search_float_count(drop_for: Callable[[int], float], num_layers: int, max_drop_pts: float) -> tuple[int, dict[int, float]]:
    """Smallest k in 0..num_layers with `drop_for(k)` ≤ `max_drop_pts` (doubling, then bisection), and every
    (k, drop) evaluated. Raises ExportError naming the best drop reached when even k = num_layers fails."""
    tried: dict[int, float] = {}

    def ok(k: int) -> bool:
        if k not in tried:
            tried[k] = float(drop_for(k))
        return tried[k] <= max_drop_pts

    def give_up() -> ExportError:
        best = min(tried, key=lambda j: (tried[j], j))
        return ExportError(f"INT8 cannot meet --max-drop {max_drop_pts:g}: the best drop reached is "
                           f"{tried[best]:.2f} mAP points (with {best} of {num_layers} layers float); raise the "
                           "budget, try another --calib-method, or fine-tune with `ssdtrt train --qat`")

    if ok(0):
        return 0, tried
    if num_layers < 1:
        raise give_up()
    fail, k = 0, 1
    while not ok(k):
        if k >= num_layers:
            raise give_up()
        fail, k = k, min(2 * k, num_layers)
    passed = k
    while passed - fail > 1:
        mid = (fail + passed) // 2
        if ok(mid):
            passed = mid
        else:
            fail = mid
    return passed, tried
