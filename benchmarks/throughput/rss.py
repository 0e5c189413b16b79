"""Memory of the streaming detect path over a long input: RSS after 1,000 and after 10,000 images, and over a long video.

    PYTHONPATH=. python benchmarks/throughput/rss.py MODEL [--images 10000] [--frames 3000] [--out rss.json]

Runs what `ssdtrt detect --no-images` runs (Detector.stream on a throughput-mode runner + the detect output sink,
COCO records kept), on N distinct small JPEG files in a temp folder and on one mp4v video of F frames, sampling the
process RSS (/proc/self/statm) as results come out. The issue's bound: RSS at 10,000 within ±10% of RSS at 1,000.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_images(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = cv2.resize(small, (128, 96), interpolation=cv2.INTER_LINEAR)
        paths.append(folder / f"im{i:05d}.jpg")
        cv2.imwrite(str(paths[-1]), img)
    return paths


def write_video(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (160, 120))
    rng = np.random.default_rng(1)
    base = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (160, 120))
    for i in range(frames):
        writer.write(np.roll(base, i, axis=1))
    writer.release()
    return path


def run(detector, sources, marks: tuple[int, ...]) -> dict[str, float]:  # noqa: ANN001
    from ssdtrt.io.outputs import DetectOutputs

    sink = DetectOutputs(out=Path(os.devnull), write_images=False, report=lambda msg: None)
    samples: dict[str, float] = {}
    start = time.perf_counter()
    for n, result in enumerate(detector.stream(sources, on_error="yield"), start=1):
        if result.ok:
            sink.add(result.name, result.image_rgb, result.detections, result.path, result.frame)
        if n in marks:
            samples[str(n)] = round(rss_mib(), 1)
    samples["images_per_second"] = round(n / (time.perf_counter() - start), 1)
    samples["records"] = len(sink.records)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--frames", type=int, default=3_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("rss.json"))
    args = parser.parse_args()
    from ssdtrt.io.images import expand_inputs
    from ssdtrt.inference.detector import Detector

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        write_images(folder, args.images)
        video = write_video(Path(tmp) / "long.mp4", args.frames)
        with Detector(args.model, score_threshold=0.3, mode="throughput") as det:
            folder_rss = run(det, expand_inputs([str(folder)]), (100, 1_000, args.images // 2, args.images))
            video_rss = run(det, expand_inputs([str(video)]), (100, args.frames // 10, args.frames))
    growth = folder_rss[str(args.images)] / folder_rss["1000"] - 1
    report = {
        "model": str(args.model), "images": args.images, "video_frames": args.frames,
        "folder_rss_mib": folder_rss, "video_rss_mib": video_rss,
        "rss_growth_1000_to_last": round(growth, 4), "within_10_percent": abs(growth) <= 0.10,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
