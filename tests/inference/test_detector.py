"""Detector pipeline vs a by-hand reference: torch model + cv2 resize/normalize + `ssdtrt.postprocess.host_torch` + scaling.

Real models only: an `ssd-small` SSD with random weights, wrapped by a minimal in-test torch Runner (the product's
torch runner is tested by its own module) and exported to ONNX (raw, decoded, nms) for the ONNX Runtime runner.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ssdtrt.core.detections import Detections  # noqa: E402
from ssdtrt.io.images import iter_inputs  # noqa: E402
from ssdtrt.core.manifest import Manifest, TensorInfo  # noqa: E402
from ssdtrt.inference.detector import Detector  # noqa: E402
from ssdtrt.postprocess.host_torch import postprocess  # noqa: E402
from ssdtrt.core.priors import default_boxes  # noqa: E402
from ssdtrt.runtime.base import Runner, TensorMeta  # noqa: E402

CLASS_NAMES = ("cat", "dog", "car", "bus", "tree", "sign")
#: Pixel tolerance relative to the image side (1e-4 of the side: 0.032 px on a 320 px image).
REL_PX_TOL = 1e-4


class TorchModelRunner(Runner):
    """A torch SSD behind the Runner interface (raw outputs). `static_batch` mimics a fixed-shape engine."""

    backend = "torch-test"

    def __init__(self, model: torch.nn.Module, static_batch: int | None = None) -> None:
        pre = model.spec.preprocess
        batch: int | str = static_batch if static_batch else "batch"
        manifest = Manifest(
            artifact="<in-memory>", kind="torch", spec=model.spec.to_dict(), num_classes=model.num_classes,
            class_names=list(model.class_names), export_mode="raw", precision="fp32",
            inputs=[TensorInfo("images", [batch, 3, pre.height, pre.width], "float32", "NCHW")],
            outputs=[TensorInfo("locs", [batch, "P", 4], "float32"), TensorInfo("logits", [batch, "P", "C"], "float32")],
        )
        super().__init__(manifest)
        self.model, self.static_batch, self.calls = model, static_batch, []

    def _activate(self) -> None:
        self.model.eval()

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feeds["images"]
        if self.static_batch is not None and x.shape[0] != self.static_batch:
            raise ValueError(f"static batch {self.static_batch}, got {x.shape[0]}")
        self.calls.append(x.shape[0])
        with torch.no_grad():
            locs, logits = self.model(torch.from_numpy(x))
        return {"locs": locs.numpy(), "logits": logits.numpy()}

    def input_metadata(self) -> dict[str, TensorMeta]:
        t = self.manifest.inputs[0]
        return {t.name: TensorMeta(t.name, np.dtype(np.float32), tuple(t.shape))}


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    from ssdtrt.model.ssd import build_model

    torch.manual_seed(0)
    return build_model("ssd-small", class_names=CLASS_NAMES).eval()


def make_images(seed: int = 0) -> list[np.ndarray]:
    """Images of different sizes and aspect ratios (smooth random content: the model's scores vary, no ties)."""
    rng = np.random.default_rng(seed)
    out = []
    for h, w in ((240, 320), (100, 57), (160, 160), (9, 7), (480, 200)):
        small = rng.integers(0, 256, (max(h // 16, 3), max(w // 16, 3), 3), dtype=np.uint8)
        smooth = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.int16)
        out.append(np.clip(smooth + rng.integers(-12, 13, smooth.shape), 0, 255).astype(np.uint8))
    return out


def reference(model: torch.nn.Module, images: list[np.ndarray], **overrides: float) -> list[Detections]:
    """By hand: cv2 resize + (x/255 - mean)/std, torch forward, torch postprocess, scale by the original size."""
    spec = model.spec
    pre = spec.preprocess
    mean, std = np.asarray(pre.mean, np.float64), np.asarray(pre.std, np.float64)
    batch = []
    for img in images:
        resized = cv2.resize(img, (pre.width, pre.height), interpolation=cv2.INTER_LINEAR).astype(np.float64)
        batch.append(((resized / 255.0 - mean) / std).transpose(2, 0, 1))
    with torch.no_grad():
        locs, logits = model(torch.from_numpy(np.stack(batch).astype(np.float32)))
    pp = spec.postprocess
    settings = dict(
        score_threshold=pp.score_threshold, iou_threshold=pp.iou_threshold, topk_candidates=pp.topk_candidates,
        max_detections=pp.max_detections, min_size=pp.min_size,
    )
    settings.update(overrides)
    dets = postprocess(locs, logits, default_boxes(spec), variances=spec.variances, **settings)
    return [d.to_pixels(img.shape[1], img.shape[0]) for d, img in zip(dets, images)]


def assert_same(ours: list[Detections], ref: list[Detections], images: list[np.ndarray], score_atol: float = 1e-5) -> None:
    assert len(ours) == len(ref) == len(images)
    for o, r, img in zip(ours, ref, images):
        assert len(o) == len(r), (len(o), len(r))
        tol = REL_PX_TOL * max(img.shape[:2])
        np.testing.assert_allclose(o.boxes, r.boxes, atol=tol, rtol=0)
        np.testing.assert_allclose(o.scores, r.scores, atol=score_atol, rtol=0)
        np.testing.assert_array_equal(o.labels, r.labels)


def test_pixels_match_torch_reference(model: torch.nn.Module) -> None:
    images = make_images()
    with Detector(TorchModelRunner(model), batch_size=8) as det:
        ours = det.detect(images)
    ref = reference(model, images)
    assert sum(len(d) for d in ref) > 50  # the comparison covers many boxes
    assert_same(ours, ref, images)
    for d, img in zip(ours, images):
        assert isinstance(d.boxes, np.ndarray) and d.boxes.dtype == np.float32
        assert d.class_names == CLASS_NAMES
        assert set(d.names()) <= set(CLASS_NAMES)
        if len(d):  # pixel coordinates inside the original image
            assert d.boxes.min() >= 0 and d.boxes[:, [0, 2]].max() <= img.shape[1] and d.boxes[:, [1, 3]].max() <= img.shape[0]
    assert set(det.last_timings_ms) == {"preprocess", "infer", "postprocess"}


def test_one_pixel_image(model: torch.nn.Module) -> None:
    """A 1x1 image is valid input. Its resized copy is constant, so scores tie across cells and which tied box
    survives is arbitrary: compare the score multiset and the box bounds, not the boxes one by one."""
    images = [np.full((1, 1, 3), 77, np.uint8)]
    (ours,) = Detector(TorchModelRunner(model)).detect(images)
    (ref,) = reference(model, images)
    assert len(ours) == len(ref) > 0
    np.testing.assert_allclose(np.sort(ours.scores), np.sort(ref.scores), atol=1e-5, rtol=0)
    assert ours.boxes.min() >= 0 and ours.boxes.max() <= 1


def test_threshold_overrides(model: torch.nn.Module) -> None:
    images = make_images(1)[:3]
    det = Detector(TorchModelRunner(model), score_threshold=0.2, iou_threshold=0.3, max_detections=5)
    ours = det.detect(images)
    assert_same(ours, reference(model, images, score_threshold=0.2, iou_threshold=0.3, max_detections=5), images)
    assert all(len(d) <= 5 and (len(d) == 0 or d.scores.min() > 0.2) for d in ours)


def test_batching_invariance(model: torch.nn.Module) -> None:
    images = make_images(2)
    one = Detector(TorchModelRunner(model), batch_size=1).detect(images)
    four = Detector(TorchModelRunner(model), batch_size=4).detect(images)
    assert_same(four, one, images)
    # a static-batch model (engine built for batch 4): 5 images → chunks of 4, the last one zero-padded
    static = TorchModelRunner(model, static_batch=4)
    det = Detector(static, batch_size=8)
    assert det.static_batch == 4
    assert_same(det.detect(images), one, images)
    assert static.calls == [4, 4]


def test_stages_compose(model: torch.nn.Module) -> None:
    images = make_images(3)[:2]
    det = Detector(TorchModelRunner(model))
    batch = det.preprocess(images)
    assert batch.shape == (2, 3, 160, 160) and batch.dtype == np.float32
    outputs = det.infer(batch)
    assert outputs["locs"].shape[:2] == outputs["logits"].shape[:2] == (2, 2390)
    manual = det.postprocess(outputs, [img.shape[:2] for img in images])
    assert_same(manual, det.detect(images), images, score_atol=0)


def test_video_yields_one_result_per_frame(model: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    rng = np.random.default_rng(4)
    for _ in range(7):
        writer.write(cv2.resize(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8), (96, 64)))
    writer.release()
    items = list(iter_inputs([str(path)]))
    assert [it.frame for it in items] == list(range(7)) and all(it.ok for it in items)
    frames = [it.image_rgb for it in items]
    assert all(f.shape == (64, 96, 3) and f.dtype == np.uint8 for f in frames)
    dets = Detector(TorchModelRunner(model), batch_size=3).detect(frames)
    assert len(dets) == 7
    assert_same(dets, reference(model, frames), frames)


# ------------------------------------------------------------------------------------------ exported ONNX


@pytest.fixture(scope="module")
def onnx_models(model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from ssdtrt.export.onnx_export import export_model

    folder = tmp_path_factory.mktemp("onnx")
    return {
        mode: export_model(model, folder / f"small_{mode}.onnx", mode=mode, dynamic_batch=True).onnx_path
        for mode in ("raw", "decoded", "nms")
    }


def ort_runner(path: Path) -> Runner:
    from ssdtrt.runtime.onnxruntime_runner import OnnxRuntimeRunner

    return OnnxRuntimeRunner(path, providers=["CPUExecutionProvider"], intra_op_threads=2)


@pytest.mark.parametrize("mode", ["raw", "decoded", "nms"])
def test_onnx_modes_match_torch_reference(model: torch.nn.Module, onnx_models: dict[str, Path], mode: str) -> None:
    images = make_images(5)
    with Detector(ort_runner(onnx_models[mode]), batch_size=2) as det:
        assert det.export_mode == mode
        ours = det.detect(images)
    assert_same(ours, reference(model, images), images, score_atol=1e-4)


def test_nms_model_reapplies_a_higher_threshold(model: torch.nn.Module, onnx_models: dict[str, Path]) -> None:
    images = make_images(6)
    det = Detector(ort_runner(onnx_models["nms"]), score_threshold=0.25, max_detections=7)
    assert_same(det.detect(images), reference(model, images, score_threshold=0.25, max_detections=7), images, 1e-4)
    with pytest.warns(UserWarning, match="NMS is baked"):
        lower = Detector(ort_runner(onnx_models["nms"]), score_threshold=0.001, iou_threshold=0.9)
    assert lower.settings.score_threshold == lower.baked_settings.score_threshold
    assert lower.settings.iou_threshold == lower.baked_settings.iou_threshold


def test_opens_a_path_with_open_runner(onnx_models: dict[str, Path]) -> None:
    runtime = pytest.importorskip("ssdtrt.runtime")
    if not hasattr(runtime, "open_runner"):
        pytest.skip("ssdtrt.runtime.open_runner is not there yet")
    images = make_images(7)[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Detector(onnx_models["raw"]) as det:
            by_path = det.detect(images)
    assert_same(by_path, Detector(ort_runner(onnx_models["raw"])).detect(images), images, score_atol=0)


@pytest.mark.cuda
def test_cuda_postprocess_matches_cpu(model: torch.nn.Module) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    images = make_images(8)
    cpu = Detector(TorchModelRunner(model)).detect(images)
    gpu = Detector(TorchModelRunner(model), postprocess_device="cuda").detect(images)
    assert_same(gpu, cpu, images)


@pytest.mark.cuda
def test_cuda_checkpoint_runner_device_outputs(small_checkpoint: Path) -> None:
    """Torch runner on the GPU + GPU postprocess on its device tensors (no host copy) == numpy postprocess of the
    same outputs copied to the host (GPU convs may use TF32, so inference itself is not compared here)."""
    images = make_images(9)
    sizes = [img.shape[:2] for img in images]
    with Detector(small_checkpoint) as cpu_det, Detector(
        small_checkpoint, device="cuda", postprocess_device="cuda", batch_size=2
    ) as gpu_det:
        assert gpu_det.device_outputs and not cpu_det.device_outputs
        outputs = gpu_det.infer(gpu_det.preprocess(images))
        assert all(t.is_cuda for t in outputs.values())
        gpu = gpu_det.postprocess(outputs, sizes)
        cpu = cpu_det.postprocess({k: v.cpu().numpy() for k, v in outputs.items()}, sizes)
        assert len(gpu_det.detect(images)) == len(images)
    assert_same(gpu, cpu, images)
