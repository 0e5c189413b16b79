"""Runner modes live in `ssdtrt.runtime`: `open_runner(..., mode="throughput")` picks each backend's own throughput
options, `run_saturated` is each backend's bare loop (bench throughput calls it without knowing the backend), and
`device_options` / `thread_options` speak each backend's terms for --device / --threads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ssdtrt.core.errors import BackendUnavailableError
from ssdtrt.runtime import MODES, open_runner, runner_class


def test_throughput_mode_sets_each_backends_options(small_raw_onnx: Path) -> None:
    assert MODES == ("latency", "throughput")
    latency = open_runner(small_raw_onnx)
    assert latency.describe()["performance_mode"] == "latency" and latency.optimal_in_flight() == 1
    busy = open_runner(small_raw_onnx, mode="throughput", requests=3)
    assert busy.describe()["performance_mode"] == "throughput" and busy.optimal_in_flight() == 3
    explicit = open_runner(small_raw_onnx, mode="throughput", requests=3, num_requests=2)  # an explicit option wins
    assert explicit.optimal_in_flight() == 2
    with pytest.raises(ValueError, match="mode must be one of"):
        open_runner(small_raw_onnx, mode="fast")


def test_torch_and_tensorrt_need_no_throughput_options(small_checkpoint: Path) -> None:
    assert runner_class("torch").throughput_options(4) == {}
    assert runner_class("tensorrt").throughput_options(4) == {}
    assert runner_class("openvino").throughput_options(4) == {"performance_mode": "throughput", "num_requests": 4}
    runner = open_runner(small_checkpoint, mode="throughput")
    assert runner.backend == "torch"


@pytest.mark.parametrize("backend", ["onnxruntime", "torch", pytest.param("openvino", marks=pytest.mark.openvino)])
def test_run_saturated_completes_requests(small_raw_onnx: Path, small_checkpoint: Path, backend: str) -> None:
    model = small_checkpoint if backend == "torch" else small_raw_onnx
    feeds = {"images": np.random.default_rng(0).normal(size=(1, 3, 160, 160)).astype(np.float32)}
    with open_runner(model, backend=backend, mode="throughput", requests=2) as runner:
        done, seconds = runner.run_saturated(feeds, 2, 0.3)
        assert done >= 1 and seconds >= 0.3
        assert runner.run_saturated(feeds, 2, 0.0) == (0, 0.0)


def test_device_and_thread_options_per_backend() -> None:
    assert runner_class("onnxruntime").device_options(None) == {"providers": ["CPUExecutionProvider"]}
    assert runner_class("onnxruntime").device_options(1)["providers"][0] == ("CUDAExecutionProvider", {"device_id": 1})
    assert runner_class("torch").device_options(0) == {"device": "cuda:0"}
    assert runner_class("openvino").device_options(None) == {"device": "CPU"}
    with pytest.raises(BackendUnavailableError, match="OpenVINO runs on the CPU"):
        runner_class("openvino").device_options(0)
    with pytest.raises(BackendUnavailableError, match="TensorRT runs on a CUDA GPU"):
        runner_class("tensorrt").device_options(None)
    assert runner_class("tensorrt").device_options(2) == {"device_index": 2}
    assert runner_class("onnxruntime").thread_options(3) == {"intra_op_threads": 3}
    assert runner_class("openvino").thread_options(3) == {"num_threads": 3}
    assert runner_class("torch").thread_options(3) == {}
