"""`ssdtrt detect` end to end (in-process `main(argv)`): every model kind gives the same detections, COCO results
load in pycocotools, category ids follow the manifest, outputs never collide, model errors are one line."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from ssdtrt.cli.app import main  # noqa: E402
from ssdtrt.io.images import read_image  # noqa: E402
from ssdtrt.inference.detector import Detector  # noqa: E402


def write_inputs(folder: Path, n: int = 3, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        h, w = int(rng.integers(80, 260)), int(rng.integers(80, 260))
        small = rng.integers(0, 256, (max(h // 16, 3), max(w // 16, 3), 3), dtype=np.uint8)
        img = np.clip(cv2.resize(small, (w, h)).astype(np.int16) + rng.integers(-12, 13, (h, w, 3)), 0, 255)
        paths.append(folder / f"im{i}.png")
        cv2.imwrite(str(paths[-1]), img.astype(np.uint8))
    return paths


def records_by_image(path: Path) -> dict[str, np.ndarray]:
    """file_name -> rows (category_id, score, x, y, w, h) sorted by score then box."""
    rows: dict[str, list[list[float]]] = {}
    for r in json.loads(path.read_text()):
        rows.setdefault(r["file_name"], []).append([r["category_id"], r["score"], *r["bbox"]])
    return {k: np.asarray(sorted(v, key=lambda row: (-row[1], row[2:]))) for k, v in rows.items()}


def test_checkpoint_onnx_and_openvino_agree(
    small_checkpoint: Path, small_raw_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = [str(p) for p in write_inputs(tmp_path / "in")]
    runs = {"pt": [str(small_checkpoint)], "onnx": [str(small_raw_onnx)]}
    try:
        import openvino  # noqa: F401

        runs["openvino"] = [str(small_raw_onnx), "--backend", "openvino"]
    except ImportError:
        pass
    results = {}
    for name, model_args in runs.items():
        out = tmp_path / name
        code = main(["detect", model_args[0], *inputs, "--out", str(out), "--score-threshold", "0.1", *model_args[1:]])
        assert code == 0, capsys.readouterr().err
        results[name] = records_by_image(out / "detections.json")
        assert sorted(p.name for p in out.iterdir()) == ["detections.json", "im0.png", "im1.png", "im2.png"]
    assert list(results["pt"]) == inputs
    assert sum(len(v) for v in results["pt"].values()) > 20
    for name in results:
        for f in inputs:
            got, want = results[name][f], results["pt"][f]
            assert got.shape == want.shape, name
            np.testing.assert_array_equal(got[:, 0], want[:, 0])
            np.testing.assert_allclose(got[:, 1], want[:, 1], atol=1e-4)
            np.testing.assert_allclose(got[:, 2:], want[:, 2:], atol=1e-4 * 260 + 2e-3)  # + JSON rounding
    # detections.json matches the library (the same Detector, pixel boxes) to the JSON's rounding
    with Detector(small_raw_onnx, score_threshold=0.1) as det:
        dets = det.detect([read_image(f) for f in inputs])
    for f, d in zip(inputs, dets):
        xywh = np.concatenate([d.boxes[:, :2], d.boxes[:, 2:] - d.boxes[:, :2]], 1)
        rows = np.c_[d.labels, np.round(d.scores.astype(np.float64), 5), np.round(xywh.astype(np.float64), 3)]
        lib = np.asarray(sorted(rows.tolist(), key=lambda r: (-r[1], r[2:])))  # sorted like records_by_image
        np.testing.assert_allclose(results["onnx"][f], lib, atol=1e-3)


def test_results_load_in_pycocotools(small_raw_onnx: Path, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    inputs = write_inputs(tmp_path / "in", n=2, seed=1)
    out = tmp_path / "out"
    assert main(["detect", str(small_raw_onnx), str(tmp_path / "in"), "--out", str(out), "--no-images",
                 "--score-threshold", "0.05"]) == 0
    gt = COCO()
    gt.dataset = {
        "images": [{"id": i + 1, "file_name": str(p), "height": 1, "width": 1} for i, p in enumerate(inputs)],
        "annotations": [], "categories": [{"id": c, "name": f"class{c}"} for c in range(1, 7)],
    }
    gt.createIndex()
    res = gt.loadRes(str(out / "detections.json"))
    assert len(res.anns) == len(json.loads((out / "detections.json").read_text())) > 0
    assert set(res.getImgIds()) == {1, 2}


def test_category_ids_from_manifest_and_nms_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from ssdtrt.export.onnx_export import export_model
    from ssdtrt.model.ssd import build_model

    torch.manual_seed(0)
    model = build_model("ssd-small").eval()
    onnx_path = export_model(model, tmp_path / "nms.onnx", mode="nms", dynamic_batch=True).onnx_path
    manifest_path = onnx_path.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    coco_ids = [1, 3, 7, 13, 44, 90]
    manifest["source"]["category_ids"] = coco_ids
    manifest_path.write_text(json.dumps(manifest))
    inputs = [str(p) for p in write_inputs(tmp_path / "in", n=2, seed=2)]
    out = tmp_path / "out"
    assert main(["detect", str(onnx_path), *inputs, "--out", str(out), "--score-threshold", "0.2", "--no-images"]) == 0
    records = json.loads((out / "detections.json").read_text())
    assert records and {r["category_id"] for r in records} <= set(coco_ids)
    assert min(r["score"] for r in records) > 0.2
    with Detector(onnx_path, score_threshold=0.2) as det:
        dets = det.detect([read_image(f) for f in inputs])
    assert sorted(r["category_id"] for r in records) == sorted(np.asarray(coco_ids)[np.concatenate([d.labels for d in dets]) - 1])
    # a lower threshold than the graph's cannot be applied: one warning line, still exit 0
    capsys.readouterr()
    assert main(["detect", str(onnx_path), inputs[0], "--out", str(out), "--score-threshold", "0.001",
                 "--no-images"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: NMS is baked")


def test_same_names_from_two_folders_and_video_frames(small_raw_onnx: Path, tmp_path: Path) -> None:
    a = write_inputs(tmp_path / "a", n=1, seed=3)[0]
    b = write_inputs(tmp_path / "b", n=1, seed=4)[0]
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 48))
    for i in range(2):
        writer.write(np.full((48, 64, 3), 60 * (i + 1), np.uint8))
    writer.release()
    out = tmp_path / "out"
    assert main(["detect", str(small_raw_onnx), str(a), str(b), str(video), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["clip.mp4", "detections.json", "im0.png", "im0_2.png"]  # the video as an annotated video
    np.testing.assert_array_equal(cv2.imread(str(out / "im0.png")).shape, cv2.imread(str(a)).shape)
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    frames = []
    while (frame := cap.read()[1]) is not None:
        frames.append(frame)
    cap.release()
    assert len(frames) == 2 and frames[0].shape == (48, 64, 3)
    out2 = tmp_path / "out2"  # --frames: every annotated frame as an image too
    assert main(["detect", str(small_raw_onnx), str(video), "--out", str(out2), "--frames", "--sequential"]) == 0
    assert sorted(p.name for p in out2.iterdir()) == ["clip.mp4", "clip_000000.jpg", "clip_000001.jpg", "detections.json"]


@pytest.mark.parametrize(
    ("model_name", "extra", "message"),
    [
        ("missing.onnx", [], "missing.onnx: no such model file"),
        ("missing.pt", [], "missing.pt: no such model file"),
        ("notes.txt", [], "unknown model format"),
        ("MODEL", ["--backend", "nonsense"], "unknown backend 'nonsense'"),
        ("MODEL", ["--backend", "tensorrt"], "runs with onnxruntime or openvino, not tensorrt"),
    ],
)
def test_model_errors_are_one_line(
    small_raw_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], model_name: str, extra: list[str],
    message: str,
) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    model = str(small_raw_onnx) if model_name == "MODEL" else str(tmp_path / model_name)
    image = write_inputs(tmp_path / "in", n=1)[0]
    code = main(["detect", model, str(image), "--out", str(tmp_path / "out"), *extra])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert "Traceback" not in captured.out + captured.err


def test_cuda_device_without_gpu_is_one_line(small_raw_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    image = write_inputs(tmp_path / "in", n=1)[0]
    code = main(["detect", str(small_raw_onnx), str(image), "--out", str(tmp_path / "out"), "--device", "cuda"])
    captured = capsys.readouterr()
    assert code == 2  # BackendUnavailableError: a missing backend / device
    assert captured.err.strip().splitlines() == ["error: postprocess on cuda: no CUDA GPU visible to torch (use the CPU)"]
