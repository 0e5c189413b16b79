"""`ssdtrt serve` as a real process (PyTriton's tritonserver on 127.0.0.1, free ports): HTTP and gRPC answers equal
`Detector`, a bad image fails only its own request, dynamic batching forms batches > 1, class names are in the
config, and SIGTERM answers in-flight requests and leaves no process behind (the last test stops the server)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="nvidia-pytriton is not installed (pip install 'ssdtrt[serve]')")
httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")

from serve_helpers import as_dict, assert_same, batch_sizes, encoded_images, reference, request  # noqa: E402
from serve_helpers import assert_http_grpc_parity  # noqa: E402

from ssdtrt.core.manifest import read_manifest  # noqa: E402
from ssdtrt.serve import contract  # noqa: E402
from ssdtrt.serve.tritonserver import ServeProcess  # noqa: E402

pytestmark = pytest.mark.integration  # starts `ssdtrt serve` (PyTriton's tritonserver) as a process

K = 50


@pytest.fixture(scope="module")
def server(small_raw_onnx: Path):
    proc = ServeProcess(repository=Path("."), model=small_raw_onnx, serve_args=(
        "--max-batch-size", "8", "--max-queue-delay-us", "100000", "--max-detections", str(K), "--threads", "1"))
    try:
        proc.start_ready(180, model="ssd")
        yield proc
    finally:
        proc.stop()
        _assert_group_gone(proc)


def _assert_group_gone(proc: ServeProcess, wait_s: float = 15.0) -> None:
    """No process of the server's group (tritonserver, python stubs) is left (they may take a moment to exit)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    left = subprocess.run(["ps", "-o", "pid,stat,cmd", "-g", str(proc.process.pid)], capture_output=True, text=True)
    pytest.fail(f"processes left in the server's group:\n{left.stdout}")


def test_http_and_grpc_equal_detector(server: ServeProcess, small_raw_onnx: Path) -> None:
    assert_http_grpc_parity(server.http_url, server.grpc_url, small_raw_onnx, encoded_images(3), K)


def test_class_names_and_contract_in_config(server: ServeProcess, small_raw_onnx: Path) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    try:
        config = http.get_model_config("ssd")
    finally:
        http.close()
    names = contract.class_names_from_json(config["parameters"][contract.CLASS_NAMES_PARAMETER]["string_value"])
    assert names == tuple(read_manifest(small_raw_onnx).class_names)
    dims = {o["name"]: (o["data_type"], o["dims"]) for o in config["output"]}
    assert dims["num_detections"] == ("TYPE_INT32", [1]) and dims["boxes"] == ("TYPE_FP32", [K, 4])
    assert dims["scores"] == ("TYPE_FP32", [K]) and dims["labels"] == ("TYPE_INT32", [K])
    assert config["input"][0]["name"] == "image" and config["input"][0]["data_type"] == "TYPE_STRING"


def test_bad_image_fails_only_its_request_and_batches_form(server: ServeProcess, small_raw_onnx: Path) -> None:
    """Six requests sent at once (the batcher waits 100 ms): the corrupt one gets its message, the others their
    detections; Triton's statistics show a batch of more than one request."""
    images = encoded_images(5, seed=1)
    expected = reference(small_raw_onnx, images)
    payloads = images[:2] + [b"\x89PNG\r\n\x1a\n not really a png"] + images[2:]
    http = httpclient.InferenceServerClient(server.http_url, concurrency=len(payloads))
    try:
        before = batch_sizes(http.get_inference_statistics("ssd"), "ssd")
        pending = [http.async_infer("ssd", request(httpclient, p)) for p in payloads]
        results = [p.get_result() for p in pending]
        time.sleep(1.0)  # the backend reports an execution's statistics after its responses went out
        after = batch_sizes(http.get_inference_statistics("ssd"), "ssd")
    finally:
        http.close()
    bad = results.pop(2)
    assert int(bad.as_numpy("num_detections")[0, 0]) == -1
    message = bad.as_numpy("error")[0, 0].decode()
    assert message.startswith("image: ") and "PNG" in message
    for result, exp in zip(results, expected):
        assert_same(as_dict(result), exp, K)
        assert result.as_numpy("error")[0, 0] == b""
    grown = {b: after.get(b, 0) - before.get(b, 0) for b in after}
    assert any(b > 1 and n > 0 for b, n in grown.items()), grown


def test_sigterm_answers_in_flight_and_leaves_nothing(server: ServeProcess) -> None:
    """Runs last: SIGTERM while requests wait in the batcher; every one is answered, the process group is gone."""
    images = encoded_images(4, seed=2)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    done: list[tuple[object, object]] = []
    finished = threading.Event()

    def callback(result, error) -> None:
        done.append((result, error))
        if len(done) == 8:
            finished.set()

    for i in range(8):
        grpc.async_infer("ssd", request(grpcclient, images[i % 4]), callback)
    time.sleep(0.03)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0
    assert finished.wait(timeout=10)
    grpc.close()
    assert all(err is None for _, err in done), [str(e) for _, e in done if e is not None]
    assert all(int(r.as_numpy("num_detections")[0, 0]) >= 0 for r, _ in done)
    time.sleep(0.5)
    _assert_group_gone(server)
