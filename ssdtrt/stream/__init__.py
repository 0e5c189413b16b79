"""Throughput mode: folders, videos and camera streams through a `Detector` with every stage overlapped.

    with Detector("engines/model.xml", performance_mode="throughput") as det:
        for result in det.stream(["a.jpg", "clip.mp4", frame_rgb]):   # results in input order
            print(result.name, result.detections.boxes)

`throughput_runner_options(backend)` gives the runner options that make a backend serve several requests at once
(OpenVINO's THROUGHPUT hint, ONNX Runtime's concurrent runs); the stream works with any runner, a latency-mode one
just keeps fewer requests in flight.
"""

from __future__ import annotations

from typing import Any

from ssdtrt.stream.pipeline import StreamResult, StreamSettings, stream_detect
from ssdtrt.stream.reader import StreamInput, read_ordered

__all__ = ["StreamInput", "StreamResult", "StreamSettings", "read_ordered", "stream_detect", "throughput_runner_options"]


def throughput_runner_options(backend: str, num_requests: int | None = None) -> dict[str, Any]:
    """Runner options for throughput mode on `backend` (a name from `ssdtrt.runtime.backend_for`)."""
    if backend in ("openvino", "onnxruntime"):
        options: dict[str, Any] = {"performance_mode": "throughput"}
        if num_requests:
            options["num_requests"] = int(num_requests)
        return options
    return {}
