"""`ssdtrt bench postprocess`: the equality gate against torchvision, timing records, the CLI end to end.

torchvision's SSD.postprocess_detections is the independent reference; no timing is asserted.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from ssdtrt.bench.postprocess import (  # noqa: E402
    BOX_ATOL,
    TORCHVISION_SETTINGS,
    PostprocessMismatchError,
    bench_case,
    check_equal,
    detections_equal,
    implementations,
)
from ssdtrt.bench.postprocess_cases import STRESS_GRID, random_case, stress_case, take_batch  # noqa: E402
from ssdtrt.cli import app as cli  # noqa: E402
from ssdtrt.core.detections import Detections  # noqa: E402


@pytest.fixture(scope="module")
def small_stress():  # noqa: ANN201
    return stress_case(2, preset="ssd-small", seed=3)


@pytest.fixture(scope="module")
def outputs(small_stress):  # noqa: ANN001, ANN201
    fns = implementations(small_stress, TORCHVISION_SETTINGS, cuda=False)
    return {name: fn() for name, fn in fns.items()}


def test_stress_case_is_stressful(small_stress, outputs) -> None:  # noqa: ANN001
    # every class reaches the top-k cap and NMS removes most candidates: real work, equal outputs
    assert set(outputs) == {"torch-cpu", "numpy", "torchvision-cpu"}
    check_equal("stress", 2, outputs)
    for d in outputs["torchvision-cpu"]:  # NMS keeps exactly one box per cluster and class
        assert len(d) == min(STRESS_GRID**2 * (small_stress.num_classes - 1), TORCHVISION_SETTINGS.max_detections)
    probs = torch.softmax(torch.from_numpy(small_stress.logits), -1)[..., 1:]
    assert bool(((probs > 0.01).sum(1) > 400).all()), "every class above the per-class top-k cap"


def perturbed(dets: list[Detections], image: int, **changes: np.ndarray) -> list[Detections]:
    out = [d.numpy() for d in dets]
    out[image] = replace(out[image], **changes)
    return out


def test_mismatch_raises_naming_case_and_impl(outputs) -> None:  # noqa: ANN001
    ref = outputs["numpy"][1].numpy()
    boxes = ref.boxes.copy()
    boxes[5, 2] += 3 * BOX_ATOL
    bad = {**outputs, "numpy": perturbed(outputs["numpy"], 1, boxes=boxes)}
    with pytest.raises(PostprocessMismatchError, match=r"case 'stress' batch 2 image 1: numpy differs from torchvision-cpu"):
        check_equal("stress", 2, bad)
    scores = ref.scores.copy()
    scores[0] -= 1e-4
    with pytest.raises(PostprocessMismatchError, match="no match"):
        check_equal("stress", 2, {**outputs, "numpy": perturbed(outputs["numpy"], 1, scores=scores)})
    labels = ref.labels.copy()
    labels[3] = labels[3] % 6 + 1
    with pytest.raises(PostprocessMismatchError):
        check_equal("stress", 2, {**outputs, "numpy": perturbed(outputs["numpy"], 1, labels=labels)})
    short = Detections(ref.boxes[:-1], ref.scores[:-1], ref.labels[:-1])
    with pytest.raises(PostprocessMismatchError, match=rf"{len(ref) - 1} vs {len(ref)} detections"):
        check_equal("stress", 2, {**outputs, "torch-cpu": [outputs["torch-cpu"][0], short]})


def test_equality_is_order_free_and_within_tolerance(outputs) -> None:  # noqa: ANN001
    ref = outputs["torchvision-cpu"][0].numpy()
    perm = np.random.default_rng(0).permutation(len(ref))
    shuffled = Detections(ref.boxes[perm] + 0.5 * BOX_ATOL, ref.scores[perm], ref.labels[perm])
    assert detections_equal(shuffled, ref) is None
    # two detections whose scores agree within the tolerance but sort the other way round still match one to one
    tied = Detections(ref.boxes.copy(), ref.scores.copy(), ref.labels.copy())
    tied.scores[:] = tied.scores[0]
    shifted = Detections(tied.boxes, tied.scores + np.float32(5e-6) * (np.arange(len(ref)) % 2), tied.labels)
    assert detections_equal(shifted, tied) is None


def test_bench_case_records(small_stress) -> None:  # noqa: ANN001
    small_random = random_case(3, preset="ssd-small", seed=1)
    timings, info = bench_case(small_random, [1, 3], TORCHVISION_SETTINGS, warmup=0, iters=2, cuda=False)
    assert [(t.batch, t.impl) for t in timings] == [(b, i) for b in (1, 3) for i in ("torch-cpu", "numpy", "torchvision-cpu")]
    for t in timings:
        assert t.iters == 2 and 0 < t.min_ms <= t.p50_ms <= t.p90_ms <= t.max_ms and t.mean_ms > 0
        assert t.detections_per_image >= 0
        if t.impl == "torchvision-cpu":
            assert t.ratio_vs_torchvision is None
        else:
            assert t.reference == "torchvision-cpu" and t.ratio_vs_torchvision > 0
    assert [c["batch"] for c in info] == [1, 3] and all(c["num_priors"] == len(small_random.priors_cxcywh) for c in info)
    assert np.array_equal(take_batch(small_stress, 3).locs[2], small_stress.locs[0]), "tiled past the case's images"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):  # noqa: ANN001, ANN201
    from ssdtrt.model.checkpoint import save_checkpoint
    from ssdtrt.model.ssd import build_model

    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pt", build_model("ssd-small", 7).eval())


def test_cli_end_to_end_writes_json_markdown_png(checkpoint, tmp_path, capsys) -> None:  # noqa: ANN001
    js, md, png = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.png"
    code = cli.main([
        "bench", "postprocess", "--checkpoint", str(checkpoint), "--preset", "ssd-small", "--batch-sizes", "1,2",
        "--warmup", "0", "--iters", "1", "--threads", "1", "--json", str(js), "--markdown", str(md), "--plot", str(png),
    ])
    assert code == 0, capsys.readouterr()
    report = json.loads(js.read_text())
    assert {"machine", "settings", "results", "cases", "tolerances", "warmup", "iters"} <= set(report)
    assert report["machine"]["cpu_model"] and report["machine"]["packages"]["torchvision"]
    assert report["settings"]["per_case"]["stress"]["topk_candidates"] == 400
    assert {(r["case"], r["batch"]) for r in report["results"]} == {(c, b) for c in ("trained", "stress", "random") for b in (1, 2)}
    assert all(r["p50_ms"] > 0 for r in report["results"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| trained | 1 | torch-cpu |" in md.read_text()
    assert "vs torchvision" in capsys.readouterr().out


def test_cli_missing_checkpoint_is_one_line(tmp_path, capsys) -> None:  # noqa: ANN001
    code = cli.main(["bench", "postprocess", "--checkpoint", str(tmp_path / "nope.pt"), "--iters", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.splitlines() == [f"error: {tmp_path / 'nope.pt'}: no such checkpoint file"]


def test_preset_settings_match_torchvision_without_topk() -> None:
    # ssd300-resnet50's preset: score 0.05, IoU 0.5, no per-class top-k (torchvision gets k = all priors), min size
    # dropped (torchvision has none) with a note
    from ssdtrt.bench.postprocess import resolve_settings

    case = random_case(1, preset="ssd300-resnet50", seed=2)
    spec, notes = resolve_settings(case, "preset")
    assert spec.topk_candidates is None and spec.min_size == 0 and spec.score_threshold == 0.05
    assert notes and "min_size" in notes[0]
    timings, info = bench_case(case, [1], spec, warmup=0, iters=1, cuda=False)  # raises if the outputs differ
    assert info[0]["candidates_per_image"] > 0 and len(timings) == 3
