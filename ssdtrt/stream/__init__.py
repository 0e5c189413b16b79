"""Throughput mode: folders, videos and camera streams through a `Detector` with every stage overlapped.

    with Detector("engines/model.xml", mode="throughput") as det:       # ssdtrt.runtime.open_runner's mode
        for result in det.stream(["a.jpg", "clip.mp4", frame_rgb]):   # results in input order
            print(result.name, result.detections.boxes)

The stream drives the narrow `ssdtrt.inference.protocol.AsyncDetector` protocol (preprocess, submit, postprocess),
not a Detector's internals. A runner opened with `mode="throughput"` serves several requests at once (OpenVINO's
THROUGHPUT hint, ONNX Runtime's concurrent runs); the stream works with any runner, a latency-mode one just keeps
fewer requests in flight.
"""

from __future__ import annotations

from ssdtrt.stream.pipeline import StreamResult, StreamSettings, stream_detect
from ssdtrt.stream.reader import StreamInput, read_ordered

__all__ = ["StreamInput", "StreamResult", "StreamSettings", "read_ordered", "stream_detect"]
