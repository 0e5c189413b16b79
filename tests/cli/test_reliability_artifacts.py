"""Damaged or mismatched model files through the real CLI (`ssdtrt detect`): one `error:` line naming the file and
the problem, a non-zero exit, no traceback. One test per fault; the library-level checks (`verify_artifact`) too.
Every other command that opens a model (bench latency/throughput/serve, serve, export-triton) refuses a same-size
corrupted model the same way, and its `--no-verify` reaches the place the runner is opened."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from serve_helpers import require_pytriton

from ssdtrt.core.errors import ManifestError
from ssdtrt.core.manifest import (
    UnverifiedArtifactWarning,
    read_manifest,
    stamp_artifact,
    verify_artifact,
    write_manifest,
)

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.integration  # whole commands in subprocesses, one per fault

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "ssdtrt.cli.app", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "im.png"
    cv2.imwrite(str(path), np.full((64, 64, 3), 127, np.uint8))
    return path


def copy_pair(src: Path, folder: Path) -> Path:
    """Copy an artifact with its manifest (and an OpenVINO .bin) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in (src, src.with_suffix(".json"), src.with_suffix(".bin")):
        if p.is_file() and not (p.suffix == ".bin" and src.suffix != ".xml"):
            shutil.copy2(p, folder / p.name)
    return folder / src.name


def detect(model: Path, image: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli("detect", str(model), str(image), "--out", str(out), "--no-images", *extra)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def ir(small_raw_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("openvino")
    from ssdtrt.engines.openvino_builder import build_openvino

    onnx_copy = copy_pair(small_raw_onnx, tmp_path_factory.mktemp("ir_src"))
    return build_openvino(onnx_copy, tmp_path_factory.mktemp("ir") / "small_raw.xml", validate=False).engine_path


def test_manifest_records_sha256_and_size_of_every_file(small_raw_onnx: Path, ir: Path) -> None:
    import hashlib

    m = read_manifest(small_raw_onnx)
    assert m.artifact_size == small_raw_onnx.stat().st_size
    assert m.artifact_sha256 == hashlib.sha256(small_raw_onnx.read_bytes()).hexdigest()
    m = read_manifest(ir)
    assert m.artifact_sha256 == hashlib.sha256(ir.read_bytes()).hexdigest()
    assert m.weights_sha256 == hashlib.sha256(ir.with_suffix(".bin").read_bytes()).hexdigest()
    assert m.weights_size == ir.with_suffix(".bin").stat().st_size


def test_truncated_onnx(small_raw_onnx: Path, image: Path, tmp_path: Path) -> None:
    model = copy_pair(small_raw_onnx, tmp_path / "m")
    truncate(model)
    assert_one_line_error(detect(model, image, tmp_path / "out"), str(model), "bytes but its manifest",
                          str(model.with_suffix(".json")))


def test_corrupted_onnx_same_size(small_raw_onnx: Path, image: Path, tmp_path: Path) -> None:
    model = copy_pair(small_raw_onnx, tmp_path / "m")
    flip_middle_byte(model)
    assert_one_line_error(detect(model, image, tmp_path / "out"), str(model), "sha256", str(model.with_suffix(".json")))
    # --no-verify skips only the hash: the corrupt weights then reach ONNX Runtime (still one line, or it runs)
    proc = detect(model, image, tmp_path / "out2", "--no-verify")
    assert "Traceback" not in proc.stderr


def test_truncated_xml(ir: Path, image: Path, tmp_path: Path) -> None:
    model = copy_pair(ir, tmp_path / "m")
    truncate(model)
    assert_one_line_error(detect(model, image, tmp_path / "out"), str(model), "bytes but its manifest")


def test_corrupted_bin_same_size(ir: Path, image: Path, tmp_path: Path) -> None:
    model = copy_pair(ir, tmp_path / "m")
    flip_middle_byte(model.with_suffix(".bin"))
    assert_one_line_error(detect(model, image, tmp_path / "out"), str(model.with_suffix(".bin")), "sha256",
                          str(model.with_suffix(".json")))


def test_truncated_plan(small_raw_onnx: Path, image: Path, tmp_path: Path) -> None:
    """Without TensorRT only the size/hash check can judge a plan: it runs before TensorRT is imported."""
    plan = tmp_path / "m.plan"
    plan.write_bytes(os.urandom(4096))
    m = read_manifest(small_raw_onnx)
    m.kind, m.artifact = "tensorrt", plan.name
    m.engine = {"backend": "tensorrt", "tensorrt_version": "10.13.0", "gpu_name": "NVIDIA A10", "compute_capability": "8.6"}
    write_manifest(plan, stamp_artifact(m, plan))
    truncate(plan)
    assert_one_line_error(detect(plan, image, tmp_path / "out"), str(plan), "2048 bytes but its manifest", "4096")


def test_truncated_checkpoint(small_checkpoint: Path, image: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "m.pt"
    shutil.copy2(small_checkpoint, ckpt)
    truncate(ckpt)
    assert_one_line_error(detect(ckpt, image, tmp_path / "out"), str(ckpt))


def test_corrupted_checkpoint(small_checkpoint: Path, image: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "m.pt"
    shutil.copy2(small_checkpoint, ckpt)
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 3: len(data) // 3 + 64] = os.urandom(64)  # inside a stored tensor record
    ckpt.write_bytes(bytes(data))
    assert_one_line_error(detect(ckpt, image, tmp_path / "out"), str(ckpt))


def test_manifest_from_another_model(small_raw_onnx: Path, image: Path, tmp_path: Path) -> None:
    """Same preset, other weights: every field of the manifest fits, only the recorded hash tells them apart."""
    from ssdtrt.export.onnx_export import export_model
    from ssdtrt.model.ssd import build_model

    torch.manual_seed(1)
    other = export_model(build_model("ssd-small").eval(), tmp_path / "other" / "small_raw.onnx", mode="raw",
                         dynamic_batch=True)
    model = copy_pair(small_raw_onnx, tmp_path / "m")
    shutil.copy2(other.manifest_path, model.with_suffix(".json"))  # the hand-copied sidecar
    line = assert_one_line_error(detect(model, image, tmp_path / "out"), str(model), str(model.with_suffix(".json")))
    assert "sha256" in line or "bytes but" in line


def test_engine_class_count_differs_from_manifest(ir: Path, image: Path, tmp_path: Path) -> None:
    model = copy_pair(ir, tmp_path / "m")
    doc = json.loads(model.with_suffix(".json").read_text())
    doc["num_classes"] += 1
    doc["class_names"].append("extra")  # a consistent but wrong manifest: the IR has one class fewer
    model.with_suffix(".json").write_text(json.dumps(doc))
    assert_one_line_error(detect(model, image, tmp_path / "out"), str(model), "classes, its manifest says")


def test_nan_weights(tmp_path: Path, image: Path) -> None:
    from ssdtrt.model.checkpoint import save_checkpoint
    from ssdtrt.model.ssd import build_model

    model = build_model("ssd-small").eval()
    with torch.no_grad():
        next(iter(model.parameters())).view(-1)[0] = float("nan")
    ckpt = save_checkpoint(tmp_path / "nan.pt", model)
    assert_one_line_error(detect(ckpt, image, tmp_path / "out"), str(ckpt), "NaN or inf")
    assert_one_line_error(cli("export", str(ckpt), "--out", str(tmp_path / "nan.onnx")), str(ckpt), "NaN or inf")
    assert not (tmp_path / "nan.onnx").exists()


def test_verify_artifact_library_contract(small_raw_onnx: Path, tmp_path: Path) -> None:
    model = copy_pair(small_raw_onnx, tmp_path / "m")
    m = read_manifest(model)
    verify_artifact(m, model)  # intact
    flip_middle_byte(model)
    verify_artifact(m, model, verify_hash=False)  # same size: only the hash can tell
    with pytest.raises(ManifestError, match="sha256") as err:
        verify_artifact(m, model)
    assert "\n" not in str(err.value) and str(model) in str(err.value) and str(model.with_suffix(".json")) in str(err.value)
    truncate(model)
    with pytest.raises(ManifestError, match="bytes but its manifest"):
        verify_artifact(m, model, verify_hash=False)  # the size is always checked
    from dataclasses import replace

    old = replace(m, artifact_sha256="", artifact_size=-1)  # a manifest from before the integrity fields
    with pytest.warns(UnverifiedArtifactWarning, match="records no sha256"):
        verify_artifact(old, model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UnverifiedArtifactWarning):
            verify_artifact(old, model)


def test_older_manifest_is_accepted_with_one_warning_line(small_raw_onnx: Path, image: Path, tmp_path: Path) -> None:
    model = copy_pair(small_raw_onnx, tmp_path / "m")
    doc = json.loads(model.with_suffix(".json").read_text())
    for key in ("artifact_sha256", "artifact_size", "weights_sha256", "weights_size"):
        doc.pop(key)
    model.with_suffix(".json").write_text(json.dumps(doc))
    proc = detect(model, image, tmp_path / "out")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "records no sha256" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and str(model) in lines[0], proc.stderr


def corrupted_copy(small_raw_onnx: Path, folder: Path) -> Path:
    """A copy of the small ONNX with one byte flipped (same size): only the sha256 can tell."""
    model = copy_pair(small_raw_onnx, folder)
    flip_middle_byte(model)
    return model


def test_bench_latency_refuses_a_corrupted_model(small_raw_onnx: Path, tmp_path: Path) -> None:
    model = corrupted_copy(small_raw_onnx, tmp_path / "m")
    args = ("bench", "latency", str(model), "--backend", "onnxruntime", "--batch-sizes", "1", "--warmup", "1",
            "--iters", "2", "--threads", "1", "--json", str(tmp_path / "lat.json"))
    assert_one_line_error(cli(*args), str(model), "sha256", str(model.with_suffix(".json")))
    assert not (tmp_path / "lat.json").exists()
    # --no-verify skips only the hash: this flipped byte lies in a weight, so ONNX Runtime loads and runs it
    proc = cli(*args, "--no-verify")
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == 0 and "sha256" not in proc.stderr, proc.stderr
    assert json.loads((tmp_path / "lat.json").read_text())["settings"]["verify_hash"] is False


def test_bench_throughput_refuses_a_corrupted_model(small_raw_onnx: Path, tmp_path: Path) -> None:
    model = corrupted_copy(small_raw_onnx, tmp_path / "m")
    args = ("bench", "throughput", str(model), "--seconds", "0.2", "--warmup", "0", "--batch", "1", "--requests", "1",
            "--json", str(tmp_path / "tp.json"))
    assert_one_line_error(cli(*args), str(model), "sha256", str(model.with_suffix(".json")))
    assert not (tmp_path / "tp.json").exists()
    # --no-verify reaches both Detectors (pipeline and the sequential one): the run passes verification and completes
    proc = cli(*args, "--no-verify")
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == 0 and "sha256" not in proc.stderr, proc.stderr
    report = json.loads((tmp_path / "tp.json").read_text())
    assert report["settings"]["verify_hash"] is False and report["results"][0]["sequential_images_per_second"]


def test_bench_latency_library_checks_the_hash_when_planning(small_raw_onnx: Path, tmp_path: Path) -> None:
    from ssdtrt.bench.latency import plan_variants

    model = corrupted_copy(small_raw_onnx, tmp_path / "m")
    with pytest.raises(ManifestError, match="sha256"):
        plan_variants([model], ["onnxruntime"])
    assert [v.backend for v in plan_variants([model], ["onnxruntime"], verify_hash=False)] == ["onnxruntime"]


@pytest.mark.parametrize("command", ["eval", "compare"])
def test_eval_and_compare_refuse_a_corrupted_model_and_pass_no_verify_on(
    command: str, small_raw_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The two commands not covered above: refused before any output is written; --no-verify runs them to a report
    (detect, bench latency/throughput/serve, serve and export-triton have their own tests in this file)."""
    from ssdtrt.cli.app import main

    model = corrupted_copy(small_raw_onnx, tmp_path / "m")
    report = tmp_path / f"{command}.json"
    if command == "eval":
        args = ["eval", str(model), "--limit", "2", "--batch-size", "2", "--json", str(report)]
    else:  # the intact export as reference, the corrupted copy as candidate
        args = ["compare", str(small_raw_onnx), str(model), "--images", "2", "--batch-size", "2", "--json", str(report)]
    assert main(args) == 1
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "sha256" in errors[0] and str(model) in errors[0] and str(model.with_suffix(".json")) in errors[0]
    assert not report.exists()
    code = main([*args, "--no-verify"])  # the flipped byte lies in a weight: the model loads and runs
    err = capsys.readouterr().err
    assert "sha256" not in err and not [ln for ln in err.splitlines() if ln.startswith("error:")], err
    assert report.is_file(), err
    if command == "eval":
        assert code == 0 and set(json.loads(report.read_text())) >= {"map", "map50"}
    else:
        assert code == (0 if json.loads(report.read_text())["passed"] else 1)  # exit code = the report's verdict


def test_serve_refuses_a_corrupted_model_before_starting_triton(small_raw_onnx: Path, tmp_path: Path) -> None:
    require_pytriton()
    model = corrupted_copy(small_raw_onnx, tmp_path / "m")
    proc = cli("serve", str(model), "--http-port", "1", "--grpc-port", "1", "--metrics-port", "1")  # never bound
    assert_one_line_error(proc, str(model), "sha256", str(model.with_suffix(".json")))


class _Stop(Exception):
    """Raised by the stand-ins below once they have recorded what reached them."""


def test_serve_no_verify_reaches_every_instance_detector(small_raw_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_pytriton()
    import ssdtrt.inference.detector
    import ssdtrt.serve.pytriton_app as app
    from ssdtrt.cli.app import main

    seen: list[app.ServeSettings] = []
    monkeypatch.setattr(app, "serve", lambda model, settings, on_ready=None: seen.append(settings))
    assert main(["serve", str(small_raw_onnx), "--no-verify", "--instances", "2"]) == 0
    assert main(["serve", str(small_raw_onnx)]) == 0
    assert [s.verify_hash for s in seen] == [False, True]
    monkeypatch.undo()

    opened: list[dict] = []

    def fake_detector(model: object, **kwargs: object) -> None:
        opened.append(kwargs)
        if len(opened) == 2:
            raise _Stop

    monkeypatch.setattr(ssdtrt.inference.detector, "Detector", fake_detector)
    with pytest.raises(_Stop):
        app.serve(small_raw_onnx, app.ServeSettings(instances=2, verify_hash=False))
    assert [o["verify_hash"] for o in opened] == [False, False]


def test_export_triton_refuses_a_corrupted_model_and_passes_no_verify_on(
    small_raw_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util
    import types

    model = corrupted_copy(small_raw_onnx, tmp_path / "m")
    proc = cli("export-triton", str(model), "--out", str(tmp_path / "repo"), "--detector", "python")
    assert_one_line_error(proc, str(model), "sha256", str(model.with_suffix(".json")))
    assert not (tmp_path / "repo").exists()  # nothing packaged

    from ssdtrt.cli.app import main

    assert main(["export-triton", str(model), "--out", str(tmp_path / "repo"), "--detector", "python",
                 "--no-verify"]) == 0
    config = (tmp_path / "repo" / "ssd_detector" / "config.pbtxt").read_text()
    assert 'key: "verify_hash"' in config and 'string_value: "0"' in config.split('key: "verify_hash"')[1][:80]
    # the python detector model Triton loads passes it to its Detector (Triton's python-backend module stubbed)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    import ssdtrt.inference.detector

    opened: list[dict] = []

    def fake_detector(artifact: str, **kwargs: object) -> None:
        opened.append(kwargs)
        raise _Stop

    monkeypatch.setattr(ssdtrt.inference.detector, "Detector", fake_detector)
    version = tmp_path / "repo" / "ssd_detector" / "1"
    spec = importlib.util.spec_from_file_location("ssdtrt_test_detector_model", version / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params = {"ssdtrt_path": {"string_value": ""}, "artifact": {"string_value": model.name},
              "verify_hash": {"string_value": "0"}}
    args = {"model_config": json.dumps({"parameters": params}), "model_repository": str(version.parent),
            "model_version": "1"}
    with pytest.raises(_Stop):
        module.TritonPythonModel().initialize(args)
    params.pop("verify_hash")  # a repository written before the parameter existed: verified
    args["model_config"] = json.dumps({"parameters": params})
    with pytest.raises(_Stop):
        module.TritonPythonModel().initialize(args)
    assert [o["verify_hash"] for o in opened] == [False, True]


def test_bench_serve_refuses_a_corrupted_model_and_passes_no_verify_on(
    small_raw_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    require_pytriton()
    import ssdtrt.serve.tritonserver as tritonserver
    from ssdtrt.cli.app import main
    from ssdtrt.core.errors import SSDTRTError

    model = corrupted_copy(small_raw_onnx, tmp_path / "m")
    started: list[tuple[str, ...]] = []

    class FakeServe:
        process = None

        def __init__(self, repository: Path, model: Path, serve_args: tuple[str, ...]) -> None:
            started.append(serve_args)

        def start_ready(self, timeout: float, model: str) -> None:
            raise SSDTRTError("stand-in server: not started")

        def stop(self) -> None:
            return None

    monkeypatch.setattr(tritonserver, "ServeProcess", FakeServe)
    args = ["bench", "serve", str(model), "--images", "2", "--baseline-batch-sizes", "1", "--baseline-seconds", "0.5",
            "--threads", "1"]
    assert main(args) == 1  # the in-process baseline opens the model first: refused, no server started
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "sha256" in errors[0] and "Traceback" not in err, err
    assert started == []
    assert main([*args, "--no-verify"]) == 1  # the baseline runs the model; the stand-in server then stops the run
    err = capsys.readouterr().err
    assert "stand-in server" in err and "sha256" not in err and "Traceback" not in err, err
    assert len(started) == 1 and "--no-verify" in started[0]
