"""numpy postprocess vs the torch postprocess (`ssdtrt.postprocess.host_torch`): same detections, same order.

Exactness: fed the same class probabilities (`scores_are_probs`), the two paths agree bit for bit on scores and
labels, in the same order, boxes within 1e-6 (numpy's and torch's exp differ by an ulp in the decode). From logits
the softmax itself differs by up to ~4 ulp (torch's vectorized exp/sum), so scores are compared at 5e-7 and the
order only where scores differ by more than that.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ssdtrt.postprocess.host_numpy import greedy_nms_grouped, postprocess_numpy
from ssdtrt.core.priors import default_boxes

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from ssdtrt.postprocess.host_torch import postprocess  # noqa: E402

SEED000 = dict(score_threshold=0.05, iou_threshold=0.5, topk_candidates=None, max_detections=100, min_size=1 / 300)
BOX_ATOL = 1e-6
SCORE_ATOL_FROM_LOGITS = 5e-7


def heads(n: int, p: int, c: int, seed: int, scale: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    locs = (rng.standard_normal((n, p, 4)) * 0.5).astype(np.float32)
    logits = (rng.standard_normal((n, p, c)) * scale).astype(np.float32)
    return locs, logits


def torch_probs(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits), dim=-1).numpy()


def run_both(locs: np.ndarray, scores: np.ndarray, priors: np.ndarray, **kw: object) -> tuple[list, list]:
    ref = postprocess(torch.from_numpy(locs), torch.from_numpy(scores), priors, **kw)
    ours = postprocess_numpy(locs, scores, priors, **kw)
    return [d.numpy() for d in ref], ours


def assert_identical(ref: list, ours: list) -> None:
    assert len(ref) == len(ours)
    for r, o in zip(ref, ours):
        assert isinstance(o.boxes, np.ndarray) and o.labels.dtype == np.int64
        np.testing.assert_array_equal(o.labels, r.labels)
        np.testing.assert_array_equal(o.scores, r.scores)
        np.testing.assert_allclose(o.boxes, r.boxes, rtol=0, atol=BOX_ATOL)


@pytest.mark.parametrize(
    ("preset", "num_classes", "kw"),
    [
        ("ssd300-vgg16", 21, {}),
        ("ssd300-vgg16", 91, dict(topk_candidates=50)),
        ("ssd300-resnet50", 81, SEED000),
        ("ssd-small", 7, {}),
        ("ssd-small", 2, dict(score_threshold=0.3, iou_threshold=0.3, max_detections=10, topk_candidates=None)),
    ],
)
def test_identical_to_torch_given_same_probs(preset: str, num_classes: int, kw: dict) -> None:
    priors = default_boxes(preset)
    batch = 1 if kw is SEED000 else 2  # the torch reference without per-class top-k is slow on CPU
    locs, logits = heads(batch, priors.shape[0], num_classes, seed=num_classes)
    ref, ours = run_both(locs, torch_probs(logits), priors, scores_are_probs=True, **kw)
    assert all(len(d) > 0 for d in ref)
    assert_identical(ref, ours)


@pytest.mark.parametrize(("preset", "num_classes", "kw"), [("ssd300-vgg16", 21, {}), ("ssd300-resnet50", 81, SEED000)])
def test_close_to_torch_from_logits(preset: str, num_classes: int, kw: dict) -> None:
    priors = default_boxes(preset)
    locs, logits = heads(1 if kw is SEED000 else 2, priors.shape[0], num_classes, seed=3, scale=2.0)
    ref, ours = run_both(locs, logits, priors, **kw)
    for r, o in zip(ref, ours):
        assert len(o) == len(r) > 0
        np.testing.assert_allclose(o.scores, r.scores, rtol=0, atol=SCORE_ATOL_FROM_LOGITS)
        assert np.all(np.diff(o.scores) <= 0), "sorted by score"
        # same (label, box) multiset; positions may swap only between scores closer than the softmax error
        key_r = np.lexsort((r.boxes[:, 1], r.boxes[:, 0], r.labels))
        key_o = np.lexsort((o.boxes[:, 1], o.boxes[:, 0], o.labels))
        np.testing.assert_array_equal(o.labels[key_o], r.labels[key_r])
        np.testing.assert_allclose(o.boxes[key_o], r.boxes[key_r], rtol=0, atol=BOX_ATOL)
        np.testing.assert_allclose(o.scores[key_o], r.scores[key_r], rtol=0, atol=SCORE_ATOL_FROM_LOGITS)
        same_place = np.mean(o.labels == r.labels)
        assert same_place > 0.95, same_place


def test_exact_ties_across_classes() -> None:
    """Class 2 copies class 1 on every prior: equal scores, the lower class comes first."""
    priors = default_boxes("ssd-small")
    locs, logits = heads(2, priors.shape[0], 5, seed=11)
    logits[..., 2] = logits[..., 1]
    logits[..., 4] = logits[..., 1]
    ref, ours = run_both(locs, torch_probs(logits), priors, scores_are_probs=True, max_detections=2000)
    assert_identical(ref, ours)
    for o in ours:  # every class-1 detection is followed by its class-2 and class-4 twins
        ones = np.flatnonzero(o.labels == 1)
        assert ones.size > 3
        np.testing.assert_array_equal(o.labels[ones + 1], 2)
        np.testing.assert_array_equal(o.labels[ones + 2], 4)
        np.testing.assert_array_equal(o.scores[ones + 2], o.scores[ones])


def test_exact_ties_within_a_class() -> None:
    """Priors with identical logits: equal scores inside one class, ranked by prior index.

    torch.topk does not order equal values, so the torch reference is only defined for the full sort path
    (topk_candidates=None, as seed 000 uses); the numpy path ranks ties by prior index on both paths.
    """
    priors = default_boxes("ssd-small")
    locs, logits = heads(2, priors.shape[0], 4, seed=5)
    logits[:, 1::3] = logits[:, 0:-1:3][:, : logits[:, 1::3].shape[1]]  # every third prior copies its left neighbour
    logits[:, 500:900, :] = np.array([0.0, 2.0, 2.0, -1.0], dtype=np.float32)  # ties within and across classes
    ref, ours = run_both(locs, torch_probs(logits), priors, scores_are_probs=True, topk_candidates=None)
    assert_identical(ref, ours)
    ref, ours = run_both(locs, torch_probs(logits), priors, scores_are_probs=True, **SEED000)
    assert_identical(ref, ours)


def test_topk_ties_keep_lowest_prior_index() -> None:
    """Independent check of the tie rule on the top-k path: with all scores equal the first k priors win."""
    priors = default_boxes("ssd-small")
    n_pri = priors.shape[0]
    locs = np.zeros((1, n_pri, 4), np.float32)
    probs = np.zeros((1, n_pri, 2), np.float32)
    probs[..., 1] = 0.5
    (det,) = postprocess_numpy(locs, probs, priors, scores_are_probs=True, topk_candidates=7, iou_threshold=1.0)
    boxes_ref = np.clip(np.concatenate([priors[:7, :2] - priors[:7, 2:] / 2, priors[:7, :2] + priors[:7, 2:] / 2], 1), 0, 1)
    np.testing.assert_allclose(det.boxes, boxes_ref, atol=1e-6)


def test_empty_images_and_mixed_batch() -> None:
    priors = default_boxes("ssd300-vgg16")
    locs, logits = heads(3, priors.shape[0], 21, seed=2)
    logits[0, :, 0] = 30.0  # background wins everywhere: nothing above threshold
    logits[2, :, 0] = 30.0
    ref, ours = run_both(locs, logits, priors)
    assert [len(d) for d in ours] == [len(d) for d in ref] == [0, 200, 0]
    assert ours[0].boxes.shape == (0, 4) and ours[0].labels.dtype == np.int64
    nothing = postprocess_numpy(locs, logits, priors, score_threshold=1.0)
    assert [len(d) for d in nothing] == [0, 0, 0]


@pytest.mark.parametrize("max_detections", [1, 7, 150])
def test_cap_per_image(max_detections: int) -> None:
    priors = default_boxes("ssd-small")
    locs, logits = heads(3, priors.shape[0], 7, seed=max_detections)
    ref, ours = run_both(locs, torch_probs(logits), priors, scores_are_probs=True, max_detections=max_detections)
    assert [len(d) for d in ours] == [max_detections] * 3
    assert_identical(ref, ours)


def test_decoded_inputs() -> None:
    """The `decoded` export's outputs (xyxy boxes, probabilities) skip decode and softmax."""
    priors = default_boxes("ssd-small")
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 0.8, (2, priors.shape[0], 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(0.01, 0.3, xy.shape).astype(np.float32)], -1)
    probs = torch_probs(heads(2, priors.shape[0], 6, seed=9)[1])
    kw = dict(boxes_are_decoded=True, scores_are_probs=True, min_size=0.05)
    ref, ours = run_both(boxes, probs, priors, **kw)
    assert_identical(ref, ours)
    no_priors = postprocess_numpy(boxes, probs, np.zeros((0, 4), np.float32), **kw)  # as the pipeline passes them
    assert_identical(ref, no_priors)
    logits = heads(2, priors.shape[0], 6, seed=9, scale=1.0)[1]
    logits[..., 0] += 8.0  # mostly background: the row pre-filter (sparse path) runs
    probs = torch_probs(logits)
    ref, _ = run_both(boxes, probs, priors, **kw)
    assert sum(len(d) for d in ref) > 0
    assert_identical(ref, postprocess_numpy(boxes, probs, np.zeros((0, 4), np.float32), **kw))


def test_greedy_nms_matches_torchvision_nms_at_the_threshold() -> None:
    """Boxes built so that many IoUs sit exactly at or next to the threshold (float32 rounding decides)."""
    from torchvision.ops import nms

    rng = np.random.default_rng(4)
    base = np.array([0.2, 0.2, 0.6, 0.6], np.float32)
    shift = rng.integers(0, 40, (300, 1)).astype(np.float32) / 400  # IoU of shifted squares: few distinct values
    boxes = np.concatenate([base[:2] + shift, base[2:] + shift], 1).astype(np.float32)
    scores = np.sort(rng.random(300).astype(np.float32))[::-1].copy()
    iou_values = np.unique(np.round((0.4 - shift[:, 0]) / (0.4 + shift[:, 0]), 6))
    for thr in [0.45, float(iou_values[len(iou_values) // 2]), 0.5]:
        ref = nms(torch.from_numpy(boxes).double(), torch.from_numpy(scores).double(), thr).numpy()
        keep = greedy_nms_grouped(boxes, np.zeros(300, np.int64), thr)
        np.testing.assert_array_equal(np.flatnonzero(keep), np.sort(ref))


def test_runs_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from ssdtrt.postprocess.host_numpy import postprocess_numpy\n"
        "from ssdtrt.core.priors import default_boxes\n"
        "p = default_boxes('ssd-small'); rng = np.random.default_rng(0)\n"
        "d = postprocess_numpy(rng.standard_normal((2, p.shape[0], 4), dtype=np.float32),"
        " rng.standard_normal((2, p.shape[0], 7), dtype=np.float32) * 3, p)\n"
        "assert len(d) == 2 and len(d[0]) > 0 and 'torch' not in {m.split('.')[0] for m in sys.modules if sys.modules[m]}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _both_paths(monkeypatch: pytest.MonkeyPatch, locs: np.ndarray, scores: np.ndarray, priors: np.ndarray, **kw: object):
    """(sparse-path result, dense-path result, whether the sparse path ran) for the same inputs."""
    import ssdtrt.postprocess.host_numpy as pn

    ran = []
    real = pn._select_sparse
    monkeypatch.setattr(pn, "_select_sparse", lambda *a, **k: ran.append(1) or real(*a, **k))
    monkeypatch.setattr(pn, "SPARSE_MAX_ROW_SHARE", 1.0)
    sparse = postprocess_numpy(locs, scores, priors, **kw)
    monkeypatch.setattr(pn, "SPARSE_MAX_ROW_SHARE", -1.0)  # every row count exceeds it: dense
    dense = postprocess_numpy(locs, scores, priors, **kw)
    return sparse, dense, bool(ran)


@pytest.mark.parametrize(
    ("preset", "num_classes", "bg_boost", "kw"),
    [
        ("ssd300-resnet50", 81, 6.5, SEED000),
        ("ssd300-vgg16", 21, 5.0, {}),
        ("ssd300-vgg16", 21, 0.0, dict(topk_candidates=20)),  # the cap binds: falls back to the dense ranking
        ("ssd-small", 7, 2.0, dict(topk_candidates=3, min_size=0.05)),
        ("ssd-small", 3, 1.0, dict(topk_candidates=0)),
    ],
)
def test_row_prefilter_path_equals_the_dense_path(
    monkeypatch: pytest.MonkeyPatch, preset: str, num_classes: int, bg_boost: float, kw: dict
) -> None:
    """The pre-filtered (sparse) path softmaxes and decodes only rows that can pass the threshold; it must give
    exactly the dense result, from logits and from probabilities, including scores sitting on the threshold."""
    priors = default_boxes(preset)
    locs, logits = heads(2, priors.shape[0], num_classes, seed=num_classes, scale=1.0)
    logits[..., 0] += bg_boost
    for scores, probs_in in ((logits, False), (torch_probs(logits), True)):
        sparse, dense, ran = _both_paths(monkeypatch, locs, scores, priors, scores_are_probs=probs_in, **kw)
        assert ran
        for a, b in zip(sparse, dense):
            np.testing.assert_array_equal(a.labels, b.labels)
            np.testing.assert_array_equal(a.scores, b.scores)
            np.testing.assert_array_equal(a.boxes, b.boxes)
    assert sum(len(d) for d in dense) > 0 or kw.get("topk_candidates") == 0


def test_row_prefilter_keeps_scores_just_above_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threshold set to exact computed probabilities (and their float32 neighbours): the strict `>` decides the
    same way on both paths, so the pre-filter's margin never drops a passing score."""
    from ssdtrt.postprocess.host_numpy import softmax

    priors = default_boxes("ssd-small")
    locs, logits = heads(1, priors.shape[0], 9, seed=21, scale=1.0)
    logits[..., 0] += 4.0
    probs = softmax(logits.copy())[..., 1:]
    for q in (0.5, 0.9, 0.99):
        exact = float(np.quantile(probs, q, method="nearest"))
        for thr in (np.nextafter(np.float32(exact), np.float32(0)), np.float32(exact), np.nextafter(np.float32(exact), np.float32(1))):
            kw = dict(score_threshold=float(thr), topk_candidates=None, max_detections=10_000, iou_threshold=1.0)
            sparse, dense, ran = _both_paths(monkeypatch, locs, logits, priors, **kw)
            assert ran and len(sparse[0]) == len(dense[0]) == int((probs > thr).sum())
            np.testing.assert_array_equal(sparse[0].scores, dense[0].scores)
