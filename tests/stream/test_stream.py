"""Throughput mode: `Detector.stream` gives the sequential path's detections bit for bit, in order, with bounded
memory; the runners' `infer_async` returns what `infer` does; `ssdtrt detect` streaming == `--sequential`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssdtrt.core.errors import ImageReadError
from ssdtrt.inference.detector import Detector
from ssdtrt.runtime.onnxruntime_runner import OnnxRuntimeRunner


def _image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 16, 3), max(w // 16, 3), 3), dtype=np.uint8)
    return np.clip(cv2.resize(small, (w, h)).astype(np.int16) + rng.integers(-12, 13, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A folder of 6 images of different sizes (png + jpg) and a 5-frame mp4v video."""
    root = tmp_path_factory.mktemp("media")
    paths: dict[str, Path] = {}
    for i in range(6):
        ext = ".png" if i % 2 else ".jpg"
        paths[f"im{i}"] = root / f"im{i}{ext}"
        cv2.imwrite(str(paths[f"im{i}"]), _image(90 + 23 * i, 200 - 17 * i, i))
    paths["clip"] = root / "clip.mp4"
    writer = cv2.VideoWriter(str(paths["clip"]), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 72))
    for i in range(5):
        writer.write(_image(72, 96, 100 + i))
    writer.release()
    return paths


def _same(a, b) -> bool:  # noqa: ANN001 - two Detections
    return all(np.array_equal(x, y) for x, y in ((a.boxes, b.boxes), (a.scores, b.scores), (a.labels, b.labels)))


def _sequential(detector: Detector, sources: list[Path]) -> list[tuple[str, object]]:
    """The independent reference: read every input with imageio, then `detect` one stage after another."""
    from ssdtrt.io.images import iter_inputs

    items = [it for it in iter_inputs([str(p) for p in sources]) if it.ok]
    dets = detector.detect([it.image_rgb for it in items])
    return [(it.name, d) for it, d in zip(items, dets)]


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["onnxruntime", pytest.param("openvino", marks=pytest.mark.openvino)])
def test_stream_equals_sequential_folder_and_video(small_raw_onnx: Path, media: dict[str, Path], backend: str) -> None:
    sources = [media[k] for k in ("im0", "im1", "clip", "im2", "im3", "im4", "im5")]
    with Detector(small_raw_onnx, backend=backend, score_threshold=0.05, batch_size=1) as det:
        ref = _sequential(det, sources)
    with Detector(small_raw_onnx, backend=backend, score_threshold=0.05, performance_mode="throughput") as det:
        assert det.runner.optimal_in_flight() >= 2
        got = list(det.stream(sources))
    assert [r.name for r in got] == [name for name, _ in ref]  # input order, video frames in place
    assert len(got) == 11 and sum(len(r.detections) for r in got) > 0
    for r, (_, d) in zip(got, ref):
        assert _same(r.detections, d), r.name
        assert r.image_rgb is not None and r.latency_ms > 0


@pytest.fixture(scope="module")
def static4_raw_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `small_raw_onnx` model (ssd-small, seed 0) exported with a static batch of 4."""
    torch = pytest.importorskip("torch")
    from ssdtrt.export.onnx_export import export_model
    from ssdtrt.model.ssd import build_model

    torch.manual_seed(0)
    model = build_model("ssd-small").eval()
    return export_model(model, tmp_path_factory.mktemp("static") / "small_raw_b4.onnx", mode="raw", batch=4).onnx_path


def test_stream_batches_arrays(small_raw_onnx: Path, media: dict[str, Path]) -> None:
    """Batched requests (7 images in batches of 3: the last one short) give the same detections as `detect`."""
    images = [cv2.imread(str(media[f"im{i}"]))[:, :, ::-1].copy() for i in range(6)] + [_image(50, 70, 9)]
    with Detector(small_raw_onnx, score_threshold=0.05, batch_size=3) as det:
        ref = det.detect(images)
        got = list(det.stream(images, batch_size=3, in_flight=2))
    assert [r.name for r in got] == [f"<image {i}>" for i in range(7)]
    assert all(_same(r.detections, d) for r, d in zip(got, ref))


def test_static_batch_padding_equals_full_batches(
    static4_raw_onnx: Path, small_raw_onnx: Path, media: dict[str, Path]
) -> None:
    """A batch-4 model only takes 4 rows: 7 images stream and `detect` as 4 + 3 real rows (+ 1 zero row) and
    give, for the last 3, exactly what a full batch of 4 real images gives them; the dynamic export agrees."""
    images = [cv2.imread(str(media[f"im{i}"]))[:, :, ::-1].copy() for i in range(6)] + [_image(50, 70, 9)]
    with Detector(static4_raw_onnx, score_threshold=0.05, batch_size=8) as det:
        assert det.static_batch == 4 and det.runner.fixed_batch == 4
        streamed = [r.detections for r in det.stream(images, in_flight=2)]  # default batch: the static one
        sequential = det.detect(images)  # one call of 7 rows: chunks of 4, the last padded
        full = det.detect(images[:4]) + det.detect([images[0], *images[4:]])[1:]  # no padding row anywhere
    with Detector(small_raw_onnx, score_threshold=0.05, batch_size=1) as dyn:
        dynamic = dyn.detect(images)
    assert sum(len(d) for d in full) > 0
    for s, q, f, d in zip(streamed, sequential, full, dynamic, strict=True):
        assert _same(s, f) and _same(q, f)
        assert len(d) == len(f) and np.array_equal(d.labels, f.labels)
        np.testing.assert_allclose(d.boxes, f.boxes, atol=1e-3, rtol=0)
        np.testing.assert_allclose(d.scores, f.scores, atol=1e-5, rtol=0)


def test_errors_keep_their_place_or_raise(small_raw_onnx: Path, media: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    sources = [media["im0"], bad, media["im1"], tmp_path / "missing.png", media["im2"]]
    with Detector(small_raw_onnx, score_threshold=0.05, performance_mode="throughput") as det:
        got = list(det.stream(sources, batch_size=2, on_error="yield"))
        assert [r.ok for r in got] == [True, False, True, False, True]
        assert "bad.jpg" in str(got[1].error) and "missing.png: no such file" in str(got[3].error)
        with pytest.raises(ImageReadError, match="bad.jpg"):
            list(det.stream(sources))


@pytest.mark.integration
def test_memory_is_bounded_by_depth_not_input_length(small_raw_onnx: Path, media: dict[str, Path]) -> None:
    """The reader never runs more than depth + the requests in flight ahead of the consumer, however long the
    input; after an early `break` every stream thread ends. (RSS over many images: benchmarks/throughput.)"""
    pulled = 0
    lead: list[int] = []
    image = cv2.imread(str(media["im0"]))[:, :, ::-1].copy()

    def endless() -> Iterator[np.ndarray]:
        nonlocal pulled
        while True:
            pulled += 1
            yield image

    before = threading.active_count()
    with Detector(small_raw_onnx, score_threshold=0.05, performance_mode="throughput") as det:
        stream = det.stream(endless(), in_flight=2)
        for n, _ in enumerate(stream, start=1):
            lead.append(pulled - n)
            if n == 60:
                break
        stream.close()
        from ssdtrt.stream.pipeline import StreamSettings, resolved

        batch, in_flight, depth = resolved(det, StreamSettings(in_flight=2))
    bound = depth + (in_flight + 2) * batch + 2  # read-ahead queue + pending requests + one slot in each hand
    assert max(lead) <= bound, (max(lead), bound)
    for thread in threading.enumerate():
        if thread.name.startswith("ssdtrt-stream") or thread.name.startswith("ssdtrt-decode"):
            thread.join(timeout=10)
    assert threading.active_count() <= before + 2  # ORT's pool threads at most; no stream thread left


def test_runner_infer_async_equals_infer(small_raw_onnx: Path) -> None:
    feeds = {"images": np.random.default_rng(0).normal(size=(2, 3, 160, 160)).astype(np.float32)}
    with OnnxRuntimeRunner(small_raw_onnx, performance_mode="throughput") as runner:
        assert runner.optimal_in_flight() >= 2 and runner.intra_op_threads >= 1
        ref = runner.infer(feeds)
        futures = [runner.infer_async(feeds) for _ in range(3)]
        for fut in futures:
            out = fut.result(timeout=60)
            assert all(np.array_equal(out[k], ref[k]) for k in ref)
    with OnnxRuntimeRunner(small_raw_onnx) as runner:
        assert runner.optimal_in_flight() == 1  # latency mode: one request with every core


@pytest.mark.openvino
def test_openvino_async_queue_equals_infer(small_raw_onnx: Path) -> None:
    from ssdtrt.runtime.openvino_runner import OpenVINORunner

    feeds = {"images": np.random.default_rng(1).normal(size=(1, 3, 160, 160)).astype(np.float32)}
    with OpenVINORunner(small_raw_onnx, performance_mode="throughput") as runner:
        assert runner.describe()["compiled_performance_hint"] == "THROUGHPUT"
        ref = runner.infer(feeds)
        futures = [runner.infer_async(feeds) for _ in range(2 * runner.optimal_in_flight())]
        for fut in futures:
            out = fut.result(timeout=60)
            assert all(np.array_equal(out[k], ref[k]) for k in ref)
        bad = runner.infer_async({"images": np.zeros((1, 3, 10, 10), np.float32)})
        with pytest.raises(Exception):  # noqa: B017 - OpenVINO's own error type; it must reach the Future
            bad.result(timeout=60)


@pytest.mark.integration
def test_cli_stream_equals_sequential(small_raw_onnx: Path, media: dict[str, Path], tmp_path: Path) -> None:
    from ssdtrt.cli.app import main

    args = [str(small_raw_onnx), str(media["im0"]), str(media["clip"]), str(media["im3"]), "--score-threshold", "0.05"]
    assert main(["detect", *args, "--out", str(tmp_path / "s"), "--no-images"]) == 0
    assert main(["detect", *args, "--out", str(tmp_path / "q"), "--no-images", "--sequential"]) == 0
    streamed = json.loads((tmp_path / "s" / "detections.json").read_text())
    sequential = json.loads((tmp_path / "q" / "detections.json").read_text())
    assert len(streamed) > 0 and streamed == sequential


def test_auto_batch_follows_the_request_time_and_the_detector_cap(small_raw_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream's default batch comes from timed batch-1 requests: 1 when one request already carries the target
    time, the Detector's batch_size when requests are far cheaper; probed once per Detector."""
    from ssdtrt.stream import pipeline as sp

    monkeypatch.setattr(sp, "ONE_IMAGE_MS", 0.0)  # every request counts as long enough: one image each
    with Detector(small_raw_onnx, batch_size=6) as det:
        assert sp.resolved(det, sp.StreamSettings())[0] == 1
    monkeypatch.setattr(sp, "ONE_IMAGE_MS", 1e9)
    monkeypatch.setattr(sp, "TARGET_REQUEST_MS", 1e-6)
    with Detector(small_raw_onnx, batch_size=6) as det:
        assert sp.resolved(det, sp.StreamSettings())[0] == 1
    monkeypatch.setattr(sp, "TARGET_REQUEST_MS", 1e6)
    with Detector(small_raw_onnx, batch_size=6) as det:
        assert sp.resolved(det, sp.StreamSettings())[0] == 6
        probes: list[object] = []
        monkeypatch.setattr(det.runner, "infer", probes.append)  # a second probe would land here
        assert sp.resolved(det, sp.StreamSettings())[0] == 6  # remembered, not probed again
        assert probes == []
        assert sp.resolved(det, sp.StreamSettings(batch_size=3))[0] == 3  # a caller's choice wins
    with Detector(small_raw_onnx, batch_size=1) as det:
        assert sp.resolved(det, sp.StreamSettings())[0] == 1
