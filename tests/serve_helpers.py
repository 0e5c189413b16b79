"""Helpers for the serving tests: encoded test images, the Detector reference, and comparing a response to it."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssdtrt.io.images import decode_image
from ssdtrt.inference.detector import Detector
from ssdtrt.serve import contract

BOX_ATOL_PX = 1e-2  # float32 through the wire is exact; batching may pick other kernels (tiny float differences)
SCORE_ATOL = 1e-5


def require_pytriton() -> None:
    """Skip unless PyTriton imports (from this environment or the serving env `make serve-env` builds) and, under
    numpy 2, the serving env for Triton's stub is ready."""
    from ssdtrt.core.errors import BackendUnavailableError
    from ssdtrt.serve.serve_env import import_pytriton, stub_env

    try:
        import_pytriton()
        stub_env()
    except BackendUnavailableError as err:
        pytest.skip(str(err), allow_module_level=True)


def bad_rows() -> dict[str, bytes]:
    """Rows that are not a decodable image, each with a distinct reason `decode_image` names."""
    jpeg = cv2.imencode(".jpg", np.full((64, 80, 3), 120, np.uint8))[1].tobytes()
    bomb = bytearray(cv2.imencode(".png", np.zeros((2, 2, 3), np.uint8))[1].tobytes())
    bomb[16:24] = struct.pack(">II", 100_000, 100_000)  # IHDR claims 10^10 pixels; CRC fixed up below
    bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(bomb[12:29])))
    return {"not an image": b"these are not pixels", "empty": b"", "truncated": jpeg[: len(jpeg) // 2],
            "bomb": bytes(bomb), "corrupt png": b"\x89PNG\r\n\x1a\n not really a png"}


def encoded_images(n: int = 3, seed: int = 0) -> list[bytes]:
    """PNG bytes of textured images of different sizes (pixel coordinates must follow each original size)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = int(rng.integers(120, 300)), int(rng.integers(120, 300))
        small = rng.integers(0, 256, (max(h // 16, 3), max(w // 16, 3), 3), dtype=np.uint8)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        out.append(cv2.imencode(".png", img)[1].tobytes())
    return out


def reference(model: Path, images: list[bytes]) -> list:
    with Detector(model) as det:
        return det.detect([decode_image(b) for b in images])


def assert_same(outputs: dict[str, np.ndarray], expected, k: int) -> None:
    """One response (batch of 1) equals the Detector's detections of that image (padding zero)."""
    assert outputs["boxes"].shape == (1, k, 4) and outputs["scores"].shape == (1, k) and outputs["labels"].shape == (1, k)
    assert outputs["num_detections"].dtype == np.int32 and outputs["labels"].dtype == np.int32
    got = contract.unpack_detections(outputs)[0]
    n = len(expected)
    assert len(got) == min(n, k)
    np.testing.assert_array_equal(got.labels, np.asarray(expected.labels)[:k])
    np.testing.assert_allclose(got.boxes, np.asarray(expected.boxes)[:k], atol=BOX_ATOL_PX, rtol=0)
    np.testing.assert_allclose(got.scores, np.asarray(expected.scores)[:k], atol=SCORE_ATOL, rtol=0)
    assert not outputs["boxes"][0, len(got):].any() and not outputs["scores"][0, len(got):].any()


def request(module, data: bytes) -> list:
    inp = module.InferInput(contract.INPUT_NAME, [1, 1], "BYTES")
    inp.set_data_from_numpy(np.array([[data]], dtype=object))
    return [inp]


def as_dict(result) -> dict[str, np.ndarray]:
    return {name: result.as_numpy(name) for name in contract.OUTPUT_NAMES}


def assert_http_grpc_parity(
    http_url: str, grpc_url: str, model: Path, images: list[bytes], k: int, model_name: str = "ssd"
) -> None:
    """Each image, sent alone over HTTP and over gRPC, gets exactly the in-process Detector's detections of `model`.

    tritonclient is imported here: the callers skip before importing this module when it is missing.
    """
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    expected = reference(model, images)
    assert any(len(d) > 0 for d in expected)  # parity over empty answers alone would prove little
    http = httpclient.InferenceServerClient(http_url)
    grpc = grpcclient.InferenceServerClient(grpc_url)
    try:
        for data, exp in zip(images, expected):
            assert_same(as_dict(http.infer(model_name, request(httpclient, data))), exp, k)
            assert_same(as_dict(grpc.infer(model_name, request(grpcclient, data))), exp, k)
    finally:
        http.close()
        grpc.close()


def batch_sizes(stats: dict, model: str) -> dict[int, int]:
    """Executions per batch size of `model` from HTTP statistics JSON."""
    for m in stats["model_stats"]:
        if m["name"] == model:
            return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in m.get("batch_stats", [])}
    return {}
