"""`ssdtrt compare` with a real `polygraphy run --onnxrt` as the other side (Polygraphy's own files, read and written
with Polygraphy's loaders): the same ONNX passes (exit 0) from either side, a model with other weights fails (exit 1),
Polygraphy's own random inputs work, and a malformed / non-Polygraphy JSON is one clear error line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("polygraphy")

from ssdtrt.cli.app import main  # noqa: E402

pytestmark = pytest.mark.integration  # runs `polygraphy run` as a subprocess

POLYGRAPHY = Path(sys.executable).with_name("polygraphy")


def _polygraphy_run(model: Path, *args: str) -> None:
    if not POLYGRAPHY.exists():
        pytest.skip(f"no polygraphy command beside {sys.executable}")
    res = subprocess.run([str(POLYGRAPHY), "run", str(model), "--onnxrt", *args], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


@pytest.fixture(scope="module")
def other_weights_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from ssdtrt.export.onnx_export import export_model
    from ssdtrt.model.ssd import build_model

    torch.manual_seed(1)
    model = build_model("ssd-small").eval()
    return export_model(model, tmp_path_factory.mktemp("other") / "other.onnx", mode="raw", dynamic_batch=True).onnx_path


def test_polygraphy_side_same_model_passes_other_weights_fail(small_raw_onnx, other_weights_onnx, tmp_path) -> None:
    from polygraphy.comparator import StreamingDataLoader

    from ssdtrt.compare import load_images, preprocess_batches
    from ssdtrt.core.manifest import read_manifest

    inputs = tmp_path / "in.json"
    assert main(["compare", str(small_raw_onnx), "--save-inputs", str(inputs), "--images", "4", "--batch-size", "2"]) == 0
    feeds = list(StreamingDataLoader(str(inputs)))  # Polygraphy's own loader reads what we wrote
    expected = preprocess_batches(load_images("synthetic", 4), read_manifest(small_raw_onnx).model_spec, 2)
    assert [sorted(f) for f in feeds] == [["images"], ["images"]]
    for f, x in zip(feeds, expected):
        np.testing.assert_array_equal(f["images"], x)

    same, other = tmp_path / "same.json", tmp_path / "other.json"
    _polygraphy_run(small_raw_onnx, "--load-inputs", str(inputs), "--save-outputs", str(same))
    _polygraphy_run(other_weights_onnx, "--load-inputs", str(inputs), "--save-outputs", str(other))

    report = tmp_path / "report.json"
    assert main(["compare", str(small_raw_onnx), str(same), "--load-inputs", str(inputs), "--json", str(report)]) == 0
    r = json.loads(report.read_text())
    assert r["num_images"] == 4 and {o["name"] for o in r["outputs"]} == {"locs", "logits"}
    assert all(o["passed"] for o in r["outputs"]) and r["detections_a"] > 0 and r["match_rate"] == 1.0
    assert main(["compare", str(same), str(small_raw_onnx), "--load-inputs", str(inputs)]) == 0  # either side
    assert main(["compare", str(small_raw_onnx), str(other), "--load-inputs", str(inputs), "--json", str(report)]) == 1
    r = json.loads(report.read_text())
    assert not any(o["passed"] for o in r["outputs"]) and r["match_rate"] < 0.5


def test_polygraphy_generated_inputs_and_bad_files(small_raw_onnx, tmp_path, capsys) -> None:
    """`polygraphy run --save-inputs` (its random inputs) is read back; bad files give one line and exit 1."""
    p_in, p_out = tmp_path / "p_in.json", tmp_path / "p_out.json"
    _polygraphy_run(small_raw_onnx, "--save-inputs", str(p_in), "--save-outputs", str(p_out))
    assert main(["compare", str(small_raw_onnx), str(p_out), "--load-inputs", str(p_in)]) == 0
    capsys.readouterr()

    bad_list, bad_text = tmp_path / "list.json", tmp_path / "text.json"
    bad_list.write_text("[1, 2]")
    bad_text.write_text("not json {")
    manifest = small_raw_onnx.with_suffix(".json")  # a JSON, but an ssdtrt manifest
    cases = [
        ([str(small_raw_onnx), str(bad_list), "--load-inputs", str(p_in)], "not a Polygraphy RunResults"),
        ([str(small_raw_onnx), str(bad_text), "--load-inputs", str(p_in)], "not a Polygraphy RunResults"),
        ([str(small_raw_onnx), str(manifest), "--load-inputs", str(p_in)], "not a Polygraphy RunResults"),
        ([str(small_raw_onnx), str(p_out)], "needs --load-inputs"),
        ([str(small_raw_onnx), str(p_out), "--load-inputs", str(p_out)], "not a feed dict"),
        ([str(p_out), str(p_out), "--load-inputs", str(p_in)], "one side must be a model"),
    ]
    for args, message in cases:
        assert main(["compare", *args]) == 1, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, (args, err)
        assert "Traceback" not in err
