"""Detections of two postprocess placements compared as sets (same label, box and score within tolerances).

Used by the placement parity tests and `benchmarks/postprocess/placement_parity.py`: a detection of `a` matches one of
`b` with the same label whose box corners are all within `box_atol` and whose score is within `score_atol`; each
detection matches at most once (each takes its closest partner). What does not match is counted on each side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ssdtrt.core.detections import Detections

BOX_ATOL = 1e-4
SCORE_ATOL = 1e-5


@dataclass(frozen=True)
class SetDiff:
    matched: int
    only_a: int  # detections of `a` without a partner in `b`
    only_b: int
    max_box_diff: float  # over matched pairs
    max_score_diff: float

    @property
    def equal(self) -> bool:
        return self.only_a == 0 and self.only_b == 0


def compare_sets(
    a: Sequence[Detections], b: Sequence[Detections], *, box_atol: float = BOX_ATOL, score_atol: float = SCORE_ATOL
) -> SetDiff:
    """Set comparison over a list of images (`a[i]` against `b[i]`)."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} images against {len(b)}")
    totals = np.zeros(3, dtype=np.int64)
    box_diff = score_diff = 0.0
    for da, db in zip(a, b):
        m, bd, sd = _match_image(da.numpy(), db.numpy(), box_atol, score_atol)
        totals += (m, len(da.scores) - m, len(db.scores) - m)
        box_diff, score_diff = max(box_diff, bd), max(score_diff, sd)
    return SetDiff(int(totals[0]), int(totals[1]), int(totals[2]), box_diff, score_diff)


def _match_image(a: Detections, b: Detections, box_atol: float, score_atol: float) -> tuple[int, float, float]:
    na, nb = len(a.scores), len(b.scores)
    if na == 0 or nb == 0:
        return 0, 0.0, 0.0
    boxes_a, boxes_b = np.asarray(a.boxes, np.float64), np.asarray(b.boxes, np.float64)
    scores_a, scores_b = np.asarray(a.scores, np.float64), np.asarray(b.scores, np.float64)
    box_d = np.abs(boxes_a[:, None, :] - boxes_b[None, :, :]).max(axis=-1)  # [A, B]
    score_d = np.abs(scores_a[:, None] - scores_b[None, :])
    ok = (np.asarray(a.labels)[:, None] == np.asarray(b.labels)[None, :]) & (box_d <= box_atol) & (score_d <= score_atol)
    # each `a` takes its closest valid partner; a partner taken twice counts once (conservative: never over-matches)
    cost = np.where(ok, box_d + score_d, np.inf)
    best = cost.argmin(axis=1)
    has = np.isfinite(cost[np.arange(na), best])
    rows = np.flatnonzero(has)
    _, first = np.unique(best[rows], return_index=True)
    rows = rows[first]
    if rows.size == 0:
        return 0, 0.0, 0.0
    return int(rows.size), float(box_d[rows, best[rows]].max()), float(score_d[rows, best[rows]].max())
