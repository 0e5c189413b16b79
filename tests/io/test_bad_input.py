"""Bad and unusual inputs: each one read on its own (imageio), then a mix through `ssdtrt detect` in a subprocess.

The CLI contract: good files are processed and written, each bad one gets exactly one stderr line naming it and
why, exit code 1 if any failed (0 otherwise), never a traceback.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssdtrt.core.errors import ImageReadError
from ssdtrt.io.images import decode_image, iter_inputs, read_image

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]


def smooth_image(h: int, w: int, seed: int, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 16, 3), max(w // 16, 3), channels), dtype=np.uint8)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return out.reshape(h, w, channels) if channels == 1 else out


def encode(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def png_with_size(width: int, height: int) -> bytes:
    """A valid small PNG whose IHDR (CRC fixed up) claims `width` x `height`: a decompression bomb's header."""
    data = bytearray(encode(".png", np.zeros((2, 2, 3), np.uint8)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# ------------------------------------------------------------------------------------------ imageio, one by one


def test_truncated_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    path.write_bytes(encode(".jpg", smooth_image(120, 160, 0))[:-400])
    with pytest.raises(ImageReadError, match=r"cut\.jpg: corrupt JPEG \(truncated"):
        read_image(path)


def test_jpeg_with_appended_data_and_unicode_path(tmp_path: Path) -> None:
    """Motion photos append a video after the JPEG's end marker: still a valid image. Unicode names read fine."""
    image = smooth_image(90, 120, 5)
    path = tmp_path / "café_照片.jpg"
    path.write_bytes(encode(".jpg", image) + b"\xff\xda" + bytes(range(256)) * 8)
    rgb = read_image(path)
    np.testing.assert_array_equal(rgb, cv2.imdecode(np.frombuffer(encode(".jpg", image), np.uint8), 1)[:, :, ::-1])


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.jpg: empty file"):
        read_image(tmp_path / "empty.jpg")


def test_text_named_png(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("these are not pixels\n")
    with pytest.raises(ImageReadError, match=r"notes\.png: not an image"):
        read_image(tmp_path / "notes.png")


def test_corrupt_png_chunk(tmp_path: Path) -> None:
    data = bytearray(encode(".png", smooth_image(60, 80, 1)))
    data[60] ^= 0xFF  # inside IDAT: its CRC no longer matches
    with pytest.raises(ImageReadError, match=r"corrupt PNG \(CRC error in the IDAT chunk\)"):
        decode_image(bytes(data), "x.png")
    with pytest.raises(ImageReadError, match=r"corrupt PNG \(truncated\)"):
        decode_image(bytes(data[: len(data) // 2]), "x.png")


def test_grayscale_png_becomes_rgb(tmp_path: Path) -> None:
    gray = smooth_image(50, 70, 2, channels=1)[:, :, 0]
    (tmp_path / "g.png").write_bytes(encode(".png", gray))
    rgb = read_image(tmp_path / "g.png")
    assert rgb.shape == (50, 70, 3) and rgb.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], gray)


def test_rgba_png_drops_alpha(tmp_path: Path) -> None:
    bgr = smooth_image(40, 30, 3)
    alpha = np.linspace(0, 255, 40 * 30).reshape(40, 30).astype(np.uint8)
    (tmp_path / "a.png").write_bytes(encode(".png", np.dstack([bgr, alpha])))
    rgb = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(rgb, bgr[:, :, ::-1])


def test_16bit_png_scaled_to_8bit(tmp_path: Path) -> None:
    values = np.array([0, 1, 128, 129, 257, 32768, 65279, 65535], dtype=np.uint16)
    bgr16 = np.stack([values, values[::-1], np.full_like(values, 514)], axis=-1)[None]  # 1 x 8 x 3
    (tmp_path / "d.png").write_bytes(encode(".png", bgr16))
    rgb = read_image(tmp_path / "d.png")
    expected = np.floor(bgr16[..., ::-1].astype(np.float64) / 257 + 0.5).astype(np.uint8)  # round(v / 257)
    np.testing.assert_array_equal(rgb, expected)
    assert rgb[0, 7, 2] == 255 and rgb[0, 0, 2] == 0 and rgb[0, 0, 0] == 2  # B = values, R = 514 / 257


def test_one_pixel_image(tmp_path: Path) -> None:
    (tmp_path / "p.png").write_bytes(encode(".png", np.array([[[10, 20, 30]]], np.uint8)))
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), [[[30, 20, 10]]])


def test_large_image_works_and_too_large_is_refused(tmp_path: Path) -> None:
    big = np.full((6000, 8000, 3), (40, 90, 200), np.uint8)  # 48 MP
    (tmp_path / "big.jpg").write_bytes(encode(".jpg", big))
    image = read_image(tmp_path / "big.jpg")
    assert image.shape == (6000, 8000, 3)
    assert np.abs(image[3000, 4000].astype(int) - [200, 90, 40]).max() <= 2
    (tmp_path / "bomb.png").write_bytes(png_with_size(20000, 20000))  # refused from the header, nothing decoded
    with pytest.raises(ImageReadError, match=r"bomb\.png: image too large \(20000x20000 = 400 MP"):
        read_image(tmp_path / "bomb.png")
    with pytest.raises(ImageReadError, match="too large"):  # the limit is a parameter
        read_image(tmp_path / "big.jpg", max_pixels=10_000_000)


def test_unreadable_video_and_missing_path(tmp_path: Path) -> None:
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    items = list(iter_inputs([str(bad), str(tmp_path / "nope.jpg"), str(tmp_path / "*.webp")]))
    assert [it.ok for it in items] == [False, False, False]
    assert "clip.mp4: not a readable video" in str(items[0].error)
    assert "nope.jpg: no such file" in str(items[1].error)
    assert "*.webp: pattern matches no image or video files" in str(items[2].error)


def test_folder_and_glob_expansion(tmp_path: Path) -> None:
    for name in ("b.png", "a.jpg", "c.txt"):
        (tmp_path / name).write_bytes(encode(".png", smooth_image(8, 8, 4)) if name != "c.txt" else b"x")
    names = [Path(it.name).name for it in iter_inputs([str(tmp_path)])]
    assert names == ["a.jpg", "b.png"]  # sorted, images only
    names = [Path(it.name).name for it in iter_inputs([str(tmp_path / "*.png"), str(tmp_path / "b.png")])]
    assert names == ["b.png"]  # the same file twice is read once


# ------------------------------------------------------------------------------------------ the CLI on a mix


@pytest.fixture(scope="module")
def onnx_model(small_raw_onnx: Path) -> Path:
    """The shared real `ssd-small` export (conftest): raw heads, dynamic batch, random weights."""
    return small_raw_onnx


def run_detect(*args: str) -> subprocess.CompletedProcess[str]:
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, "COLUMNS": "80"}
    return subprocess.run(
        [sys.executable, "-m", "ssdtrt.cli.app", "detect", *args], capture_output=True, text=True, env=env,
        timeout=300, cwd=ROOT,
    )


def make_good_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    files = {
        "photo.jpg": encode(".jpg", smooth_image(240, 320, 10)),
        "gray.png": encode(".png", smooth_image(64, 80, 11, channels=1)[:, :, 0]),
        "rgba.png": encode(".png", np.dstack([smooth_image(70, 90, 12), np.full((70, 90), 100, np.uint8)])),
        "deep.png": encode(".png", smooth_image(50, 60, 13).astype(np.uint16) * 257),
        "dot.png": encode(".png", np.full((1, 1, 3), 90, np.uint8)),
        "big.jpg": encode(".jpg", cv2.resize(smooth_image(60, 80, 14), (8000, 6000))),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    paths["clip.avi"] = folder / "clip.avi"
    writer = cv2.VideoWriter(str(paths["clip.avi"]), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for i in range(3):
        writer.write(smooth_image(64, 96, 20 + i))
    writer.release()
    return paths


def make_bad_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    paths = {name: folder / name for name in ("cut.jpg", "empty.jpg", "text.png", "garbage.mp4", "bomb.png")}
    paths["cut.jpg"].write_bytes(encode(".jpg", smooth_image(100, 100, 30))[:-300])
    paths["empty.jpg"].write_bytes(b"")
    paths["text.png"].write_text("hello, I am text\n")
    paths["garbage.mp4"].write_bytes(np.random.default_rng(1).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    paths["bomb.png"].write_bytes(png_with_size(12000, 9000))
    paths["missing.jpg"] = folder / "missing.jpg"
    return paths


@pytest.mark.integration
def test_cli_mix_of_good_and_bad(onnx_model: Path, tmp_path: Path) -> None:
    good = make_good_inputs(tmp_path / "good")
    bad = make_bad_inputs(tmp_path / "bad")
    out = tmp_path / "out"
    order = ["photo.jpg", "cut.jpg", "gray.png", "empty.jpg", "rgba.png", "text.png", "deep.png", "garbage.mp4",
             "dot.png", "missing.jpg", "big.jpg", "bomb.png", "clip.avi"]
    args = [str({**good, **bad}[name]) for name in order]
    proc = run_detect(str(onnx_model), *args, "--out", str(out), "--score-threshold", "0.05")
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == len(bad), lines  # one line per bad input and nothing else (no ffmpeg / libpng noise)
    for name, path in bad.items():
        hits = [ln for ln in lines if str(path) in ln]
        assert len(hits) == 1, (name, lines)
    assert "truncated" in next(ln for ln in lines if "cut.jpg" in ln)
    assert "empty file" in next(ln for ln in lines if "empty.jpg" in ln)
    assert "not an image" in next(ln for ln in lines if "text.png" in ln)
    assert "not a readable video" in next(ln for ln in lines if "garbage.mp4" in ln)
    assert "too large" in next(ln for ln in lines if "bomb.png" in ln)
    assert "no such file" in next(ln for ln in lines if "missing.jpg" in ln)

    written = sorted(p.name for p in out.iterdir())
    expected_images = ["big.jpg", "deep.png", "dot.png", "gray.png", "photo.jpg", "rgba.png"]
    assert written == sorted([*expected_images, "clip.mp4", "detections.json"])  # the video as an annotated video
    for name in expected_images:  # annotated copies have the original size
        assert cv2.imread(str(out / name)).shape[:2] == read_image(good[name]).shape[:2]
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3 and cap.read()[1].shape[:2] == (64, 96)
    cap.release()
    records = json.loads((out / "detections.json").read_text())
    files = [str(good[n]) for n in ("photo.jpg", "gray.png", "rgba.png", "deep.png", "dot.png", "big.jpg")]
    files += [f"{good['clip.avi']}#frame={i}" for i in range(3)]
    seen = {r["file_name"]: r["image_id"] for r in records}
    assert list(seen) == files  # every good image has detections, in input order
    assert list(seen.values()) == list(range(1, len(files) + 1))
    assert all(r["score"] > 0.05 and 1 <= r["category_id"] <= 6 and len(r["bbox"]) == 4 for r in records)


@pytest.mark.integration
def test_cli_all_good_exits_zero(onnx_model: Path, tmp_path: Path) -> None:
    good = make_good_inputs(tmp_path / "good")
    del good["big.jpg"]  # keep this one quick
    out = tmp_path / "out"
    proc = run_detect(str(onnx_model), str(tmp_path / "good" / "*.png"), str(good["photo.jpg"]), "--out", str(out),
                      "--no-images")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""
    assert sorted(p.name for p in out.iterdir()) == ["detections.json"]
    assert "5 image(s)" in proc.stdout


def test_prefetch_keeps_order_errors_and_stops_early(tmp_path: Path) -> None:
    from ssdtrt.io.images import prefetch

    paths = []
    for i in range(12):
        paths.append(tmp_path / f"{i:02d}.png")
        paths[-1].write_bytes(encode(".png", smooth_image(16, 16, i)) if i % 5 else b"")  # 0, 5, 10 are empty
    direct = list(iter_inputs([str(p) for p in paths]))
    ahead = list(prefetch(iter_inputs([str(p) for p in paths]), depth=3))
    assert [(a.name, a.ok) for a in ahead] == [(d.name, d.ok) for d in direct]
    assert [a.ok for a in ahead].count(False) == 3
    for a, d in zip(ahead, direct):
        if a.ok:
            np.testing.assert_array_equal(a.image_rgb, d.image_rgb)

    def failing():  # noqa: ANN202
        yield direct[1]
        raise RuntimeError("reader broke")

    got = []
    with pytest.raises(RuntimeError, match="reader broke"):
        for item in prefetch(failing(), depth=2):
            got.append(item)
    assert len(got) == 1
    stream = prefetch(iter(direct * 50), depth=2)  # leave early: the reader thread must stop
    assert next(stream).name == direct[0].name
    stream.close()
    import threading

    assert not [t for t in threading.enumerate() if t.name == "ssdtrt-prefetch" and t.is_alive()]
