"""`ssdtrt export` end to end, and its errors: one line, non-zero exit, no partial .onnx left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx
import pytest
import torch

import ssdtrt.cli.app as cli
from ssdtrt.core.manifest import read_manifest
from ssdtrt.model.checkpoint import save_checkpoint
from ssdtrt.model.ssd import build_model


@pytest.fixture(autouse=True)
def _only_our_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("export", "lint", "compare", "evaluate"))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("ck") / "small.pt"
    save_checkpoint(path, build_model("ssd-small"))
    return path


def _onnx_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".onnx" in p.name]


def test_export_nms_writes_model_and_manifest(ckpt, tmp_path, capsys) -> None:
    out = tmp_path / "export" / "m.onnx"
    code = cli.main([
        "export", str(ckpt), "--out", str(out), "--mode", "nms", "--dynamic-batch", "--score-threshold", "0.2",
        "--max-detections", "50", "--simplify",
    ])
    assert code == 0, capsys.readouterr().err
    onnx.checker.check_model(onnx.load(out), full_check=True)
    m = read_manifest(out)
    assert m.export_mode == "nms" and m.precision == "fp32" and m.dynamic_batch
    assert m.postprocess["score_threshold"] == 0.2 and m.postprocess["max_detections"] == 50
    assert [t.name for t in m.outputs] == ["num_detections", "boxes", "scores", "labels"]
    assert m.outputs[1].shape == ["batch", 50, 4] and m.outputs[0].dtype == "int32"
    assert m.source["sha256"] and m.source["checkpoint"] == str(ckpt)
    assert {"onnx", "onnxruntime", "torch"} <= set(m.tools)
    assert cli.main(["lint", str(out)]) == 0


def test_eval_accepts_onnx(ckpt, tmp_path, capsys) -> None:
    out = tmp_path / "raw.onnx"
    assert cli.main(["export", str(ckpt), "--out", str(out), "--batch", "4"]) == 0
    js = tmp_path / "eval.json"
    assert cli.main(["eval", str(out), "--limit", "8", "--json", str(js)]) == 0
    result = json.loads(js.read_text())
    assert 0.0 <= result["map"] <= 1.0 and "map50" in result


def _fails(args: list[str], capsys, match: str) -> str:
    code = cli.main(args)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.count("\n") == 0 and match in err, err
    assert "Traceback" not in err
    return err


def test_missing_checkpoint(tmp_path, capsys) -> None:
    _fails(["export", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x.onnx")], capsys, "nope.pt")
    assert not _onnx_files(tmp_path)


def test_corrupt_checkpoint(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    _fails(["export", str(bad), "--out", str(tmp_path / "x.onnx")], capsys, "bad.pt")
    assert not _onnx_files(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output(ckpt, tmp_path, capsys) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        _fails(["export", str(ckpt), "--out", str(ro / "m.onnx")], capsys, "cannot write")
    finally:
        ro.chmod(0o700)


def test_output_is_a_directory_name(ckpt, tmp_path, capsys) -> None:
    (tmp_path / "taken.onnx").mkdir()  # the rename onto a directory fails: temp file must be cleaned up
    _fails(["export", str(ckpt), "--out", str(tmp_path / "taken.onnx")], capsys, "cannot write")
    assert [p.name for p in tmp_path.iterdir()] == ["taken.onnx"]


def test_opset_too_old(ckpt, tmp_path, capsys) -> None:
    _fails(["export", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--opset", "11"], capsys, "opset 11 is too old")
    assert not _onnx_files(tmp_path)


def test_int8_without_calibration_data(ckpt, tmp_path, capsys) -> None:
    _fails(["export", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--precision", "int8"], capsys, "--calib-data")
    assert not _onnx_files(tmp_path)


def test_class_count_mismatch_with_manifest(ckpt, tmp_path, capsys) -> None:
    out = tmp_path / "m.onnx"
    assert cli.main(["export", str(ckpt), "--out", str(out), "--mode", "decoded"]) == 0
    manifest = json.loads(out.with_suffix(".json").read_text())
    manifest["num_classes"] = 4
    manifest["class_names"] = ["a", "b", "c"]
    out.with_suffix(".json").write_text(json.dumps(manifest))
    _fails(["eval", str(out), "--limit", "2"], capsys, "classes")
