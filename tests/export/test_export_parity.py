"""Exported ONNX (run in ONNX Runtime) vs the PyTorch model on 20 synthetic validation images.

raw / decoded: outputs within 1e-4 absolute of torch, static batch 1 and 4 and dynamic batch (fed 1 and 4 at a time).
nms: detections identical to `ssdtrt.postprocess.host_torch` on the torch heads (same count, labels and order; boxes <= 1e-4,
scores <= 1e-5), with settings that force images with zero detections, more candidates than K, min_size, no per-class
top-k, and fewer candidates in total than K (padding).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ssdtrt.core.config import PostprocessSpec
from ssdtrt.data import open_dataset
from ssdtrt.export.lint import lint_onnx
from ssdtrt.export.onnx_export import export_model
from ssdtrt.model.ssd import build_model
from ssdtrt.postprocess.host_torch import postprocess
from ssdtrt.preprocess.host import preprocess_images
from ssdtrt.core.priors import default_boxes
from ssdtrt.inference.batching import run_in_batches
from ssdtrt.runtime.onnxruntime_runner import OnnxRuntimeRunner

N_IMAGES = 20
ATOL_OUT = 1e-4


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("ssd-small").eval()


@pytest.fixture(scope="module")
def images(model: torch.nn.Module) -> np.ndarray:
    ds = open_dataset("synthetic", "val", size=N_IMAGES)
    return preprocess_images([ds[i].image for i in range(N_IMAGES)], model.spec.preprocess)


@pytest.fixture(scope="module")
def heads(model: torch.nn.Module, images: np.ndarray) -> dict[str, torch.Tensor]:
    from ssdtrt.core.codec import decode

    with torch.no_grad():
        locs, logits = model(torch.from_numpy(images))
    priors = torch.from_numpy(default_boxes(model.spec))
    boxes = decode(locs, priors, model.spec.variances).clamp(0, 1)
    return {"locs": locs, "logits": logits, "boxes": boxes, "scores": torch.softmax(logits, -1)}


@pytest.fixture(scope="module")
def outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export")


def _feed(runner: OnnxRuntimeRunner, images: np.ndarray, chunk: int) -> dict[str, np.ndarray]:
    infer = lambda rows: runner.infer({"images": rows})  # noqa: E731
    parts = [run_in_batches(images[s : s + chunk], runner.fixed_batch, infer) for s in range(0, len(images), chunk)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@pytest.mark.parametrize("mode", ["raw", "decoded"])
@pytest.mark.parametrize("batch,dynamic,chunk", [(1, False, 1), (4, False, 4), (1, True, 1), (1, True, 4)])
def test_raw_and_decoded_match_torch(model, images, heads, outdir, mode, batch, dynamic, chunk) -> None:
    path = outdir / f"{mode}_b{batch}{'_dyn' if dynamic else ''}.onnx"
    if not path.exists():
        export_model(model, path, mode=mode, batch=batch, dynamic_batch=dynamic)
    with OnnxRuntimeRunner(path, providers=["CPUExecutionProvider"]) as runner:
        assert runner.fixed_batch == (None if dynamic else batch)
        out = _feed(runner, images, chunk)
    names = ("locs", "logits") if mode == "raw" else ("boxes", "scores")
    for name in names:
        ref = heads[name].numpy()
        assert out[name].shape == ref.shape and out[name].dtype == np.float32
        err = float(np.abs(out[name] - ref).max())
        assert err <= ATOL_OUT, f"{mode}/{name}: max |onnx - torch| = {err:.3g}"


def _check_nms(out: dict[str, np.ndarray], heads: dict[str, torch.Tensor], priors: np.ndarray, s: PostprocessSpec) -> list[int]:
    ref = postprocess(heads["locs"], heads["logits"], priors, **asdict(s))
    k = s.max_detections
    assert out["boxes"].shape == (N_IMAGES, k, 4) and out["scores"].shape == (N_IMAGES, k)
    assert out["num_detections"].dtype == np.int32 and out["labels"].dtype == np.int32
    counts = []
    for i, d in enumerate(ref):
        n = int(out["num_detections"][i])
        assert n == len(d), f"image {i}: {n} detections in the graph, {len(d)} in torch"
        np.testing.assert_array_equal(out["labels"][i, :n], d.labels.numpy())
        np.testing.assert_allclose(out["boxes"][i, :n], d.boxes.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(out["scores"][i, :n], d.scores.numpy(), atol=1e-5, rtol=0)
        assert not out["boxes"][i, n:].any() and not out["scores"][i, n:].any() and not out["labels"][i, n:].any()
        counts.append(n)
    return counts


def _fg_max(heads: dict[str, torch.Tensor]) -> np.ndarray:
    return heads["scores"][..., 1:].amax(dim=(1, 2)).numpy()


@pytest.mark.parametrize("batch,dynamic,chunk", [(1, True, 4), (4, False, 4), (1, False, 1), (1, True, 1)])
def test_nms_default_settings_cap_at_k(model, images, heads, outdir, batch, dynamic, chunk) -> None:
    """Preset settings (threshold 0.01): random weights give far more candidates than K = 100 per image."""
    settings = model.spec.postprocess
    path = outdir / f"nms_b{batch}{'_dyn' if dynamic else ''}.onnx"
    if not path.exists():
        export_model(model, path, mode="nms", batch=batch, dynamic_batch=dynamic, postprocess=settings)
    with OnnxRuntimeRunner(path, providers=["CPUExecutionProvider"]) as runner:
        out = _feed(runner, images, chunk)
    counts = _check_nms(out, heads, default_boxes(model.spec), settings)
    assert min(counts) == settings.max_detections  # every image saturates K


def test_nms_zero_detections_and_min_size(model, images, heads, outdir) -> None:
    """A threshold between the images' best scores: some images get none, others a few; min_size active."""
    fg = np.sort(_fg_max(heads))
    thr = float((fg[N_IMAGES // 2 - 1] + fg[N_IMAGES // 2]) / 2)
    settings = replace(model.spec.postprocess, score_threshold=thr, min_size=0.05, iou_threshold=0.3)
    path = outdir / "nms_thr.onnx"
    export_model(model, path, mode="nms", dynamic_batch=True, postprocess=settings)
    with OnnxRuntimeRunner(path, providers=["CPUExecutionProvider"]) as runner:
        out = _feed(runner, images, 4)
    counts = _check_nms(out, heads, default_boxes(model.spec), settings)
    assert 0 in counts and max(counts) > 0


def test_nms_all_candidates_and_padding(model, images, heads, outdir) -> None:
    """No per-class top-k (k = min(P, 2000), the nms cap) with K larger than all candidates; and top-k 10 (60 < K =
    100 → padded)."""
    priors = default_boxes(model.spec)
    for name, settings in {
        "all": replace(model.spec.postprocess, topk_candidates=None, max_detections=300, score_threshold=0.15),
        "pad": replace(model.spec.postprocess, topk_candidates=10, max_detections=100),
    }.items():
        path = outdir / f"nms_{name}.onnx"
        res = export_model(model, path, mode="nms", batch=4, postprocess=settings)
        settings = PostprocessSpec(**res.manifest.postprocess)  # with the graph's candidates_per_class (2000 for "all")
        with OnnxRuntimeRunner(path, providers=["CPUExecutionProvider"]) as runner:
            out = _feed(runner, images, 4)
        counts = _check_nms(out, heads, priors, settings)
        assert lint_onnx(path).ok  # k = P must not become a TopK TensorRT rejects (K >= 3840 for SSD300)
        if name == "pad":  # 6 classes x 10 candidates < K: the padding rows are exercised
            assert 0 < max(counts) <= 60 < settings.max_detections
