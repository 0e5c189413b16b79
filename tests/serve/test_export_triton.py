"""`ssdtrt export-triton`: every config.pbtxt parses with tritonclient's model_config_pb2 and says what Triton needs;
the bundled tritonserver on 127.0.0.1 loads the `python` repository (all models READY) and answers over HTTP and gRPC
exactly like `Detector`, a bad image fails only its request, batches form; the onnxruntime/openvino/tensorrt
repositories pass Triton's config validation with the missing backend library as the only error."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pytest

httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
from google.protobuf import text_format  # noqa: E402
from serve_helpers import as_dict, assert_same, batch_sizes, encoded_images, reference, request  # noqa: E402
from serve_helpers import assert_http_grpc_parity, require_pytriton  # noqa: E402

require_pytriton()
from tritonclient.utils import InferenceServerException  # noqa: E402

from ssdtrt.cli.app import main  # noqa: E402
from ssdtrt.core.manifest import read_manifest  # noqa: E402
from ssdtrt.serve import contract  # noqa: E402
from ssdtrt.serve.tritonserver import TritonProcess  # noqa: E402

pytestmark = pytest.mark.integration  # starts the bundled tritonserver on the written repositories

K = 40
ROOT = str(Path(__file__).resolve().parents[2])


def export(model: Path, out: Path, detector: str, name: str = "ssd", *extra: str) -> Path:
    code = main(["export-triton", str(model), "--out", str(out), "--detector", detector, "--model-name", name,
                 "--max-batch-size", "8", "--max-queue-delay-us", "100000", "--max-detections", str(K),
                 "--ssdtrt-path", ROOT, *extra])
    assert code == 0
    return out


def parse(path: Path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def python_repo(small_raw_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(small_raw_onnx, tmp_path_factory.mktemp("repo") / "python", "python", "ssd", "--threads", "1")


@pytest.fixture(scope="module")
def server(python_repo: Path):
    proc = TritonProcess(python_repo).start()
    try:
        proc.wait_ready(180)
        yield proc
    finally:
        proc.stop()


def test_configs_parse_and_say_what_triton_needs(small_raw_onnx: Path, python_repo: Path, tmp_path: Path) -> None:
    manifest = read_manifest(small_raw_onnx)
    repos = {"python": python_repo}
    for det in ("onnxruntime", "openvino", "tensorrt"):
        repos[det] = export(small_raw_onnx, tmp_path / det, det)
    kinds = {"python": "KIND_CPU", "onnxruntime": "KIND_CPU", "openvino": "KIND_CPU", "tensorrt": "KIND_GPU"}
    for det, repo in repos.items():
        configs = {p.parent.name: parse(p) for p in repo.glob("*/config.pbtxt")}
        assert set(configs) == {"ssd", "ssd_preprocess", "ssd_detector", "ssd_postprocess"}
        for name, cfg in configs.items():
            assert cfg.name == name and cfg.max_batch_size == 8
            if name != "ssd":
                assert cfg.dynamic_batching.max_queue_delay_microseconds == 100000
                assert len(cfg.instance_group) == 1 and cfg.instance_group[0].count == 1
        detector = configs["ssd_detector"]
        assert model_config_pb2.ModelInstanceGroup.Kind.Name(detector.instance_group[0].kind) == kinds[det]
        net_in = manifest.inputs[0]
        assert detector.input[0].name == net_in.name and list(detector.input[0].dims) == list(net_in.shape[1:])
        assert {o.name: list(o.dims) for o in detector.output} == {t.name: list(t.shape[1:]) for t in manifest.outputs}
        ens = configs["ssd"]
        assert ens.platform == "ensemble" and [s.model_name for s in ens.ensemble_scheduling.step] == [
            "ssd_preprocess", "ssd_detector", "ssd_postprocess"]
        dims = {o.name: (model_config_pb2.DataType.Name(o.data_type), list(o.dims)) for o in ens.output}
        assert dims == {"num_detections": ("TYPE_INT32", [1]), "boxes": ("TYPE_FP32", [K, 4]),
                        "scores": ("TYPE_FP32", [K]), "labels": ("TYPE_INT32", [K])}
        assert not any(o.HasField("reshape") for o in ens.output)
        names = contract.class_names_from_json(ens.parameters[contract.CLASS_NAMES_PARAMETER].string_value)
        assert names == tuple(manifest.class_names)
    readme = (repos["tensorrt"] / "README.md").read_text()
    assert "trtexec --onnx=ssd_detector/model.onnx" in readme and "--maxShapes=images:8x3x" in readme


def test_every_model_ready(server: TritonProcess) -> None:
    req = urllib.request.Request(f"http://{server.http_url}/v2/repository/index", data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        index = json.loads(resp.read())
    assert {m["name"]: m.get("state") for m in index} == {
        "ssd": "READY", "ssd_preprocess": "READY", "ssd_detector": "READY", "ssd_postprocess": "READY"}


def test_http_and_grpc_equal_detector(server: TritonProcess, small_raw_onnx: Path) -> None:
    assert_http_grpc_parity(server.http_url, server.grpc_url, small_raw_onnx, encoded_images(3, seed=3), K)


def test_bad_image_fails_alone_and_batches_form(server: TritonProcess, small_raw_onnx: Path) -> None:
    images = encoded_images(5, seed=4)
    expected = reference(small_raw_onnx, images)
    payloads = images[:2] + [b"\x00\x01 these bytes are no image"] + images[2:]
    http = httpclient.InferenceServerClient(server.http_url, concurrency=len(payloads))
    try:
        before = batch_sizes(http.get_inference_statistics(), "ssd_detector")
        pending = [http.async_infer("ssd", request(httpclient, p)) for p in payloads]
        outcomes = []
        for p in pending:
            try:
                outcomes.append(p.get_result())
            except InferenceServerException as err:
                outcomes.append(err)
        time.sleep(1.0)  # statistics are reported after the responses
        after = batch_sizes(http.get_inference_statistics(), "ssd_detector")
    finally:
        http.close()
    bad = outcomes.pop(2)
    assert isinstance(bad, InferenceServerException) and "image: " in str(bad) and "not an image" in str(bad)
    for result, exp in zip(outcomes, expected):
        assert not isinstance(result, Exception), result
        assert_same(as_dict(result), exp, K)
    grown = {b: after.get(b, 0) - before.get(b, 0) for b in after}
    assert any(b > 1 and n > 0 for b, n in grown.items()), grown


def test_backend_repositories_pass_triton_validation(small_raw_onnx: Path, tmp_path: Path) -> None:
    """One tritonserver over the three backend repositories: pre/postprocess load, each detector fails only for
    its missing backend library (not shipped with PyTriton), each ensemble only because its detector did."""
    repo = tmp_path / "backends"
    for det, name in (("onnxruntime", "ort"), ("openvino", "ov"), ("tensorrt", "trt")):
        export(small_raw_onnx, repo, det, name)
    proc = TritonProcess(repo, extra_args=("--exit-on-error=false", "--strict-readiness=false")).start()
    try:
        proc.wait_ready(120, live_only=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until every model has settled
            req = urllib.request.Request(f"http://{proc.http_url}/v2/repository/index", data=b"{}", method="POST")
            with urllib.request.urlopen(req, timeout=10) as resp:
                index = {m["name"]: m for m in json.loads(resp.read())}
            if len(index) == 12 and all(m.get("state") in ("READY", "UNAVAILABLE") or "reason" in m or
                                        m["name"] in ("ort", "ov", "trt") for m in index.values()):
                break
            time.sleep(0.5)
    finally:
        proc.stop()
    log = proc.log_text()
    errors = [line for line in log.splitlines() if re.match(r"E\d{4} ", line)]  # Triton's error lines
    # consequences, not causes: no GPU on this machine; the summary line; ensembles whose detector did not load
    allowed_also = ("CudaDriverHelper has not been initialized", "failed to load all models", "depends on")
    causes = [e for e in errors if not any(a in e for a in allowed_also)]
    backend = {"ort": "onnxruntime", "ov": "openvino", "trt": "tensorrt"}
    for name, lib in backend.items():
        assert index[f"{name}_preprocess"]["state"] == "READY" and index[f"{name}_postprocess"]["state"] == "READY"
        assert index[f"{name}_detector"]["state"] == "UNAVAILABLE"
        assert index[f"{name}_detector"]["reason"] == (
            f"Invalid argument: unable to find backend library for backend '{lib}', try specifying runtime on the "
            "model configuration.")
    assert len(causes) == 3 and all("unable to find backend library" in e for e in causes), errors
    assert log.count("depends on") == 3


def test_cli_errors_are_one_line(small_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["export-triton", str(small_checkpoint), "--out", str(tmp_path / "r"), "--detector", "python"])
    err = capsys.readouterr().err
    assert code == 1 and "needs an exported model" in err and "Traceback" not in err
